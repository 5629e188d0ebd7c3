//! The response phase for a whole (non-streamed) body: each response guard, in order, over
//! the generated text in the provider's format, before it is translated for the client.

use serde_json::Value;

use super::outcome::{Found, Timer, rule_name};
use super::request::{Rejected, Remote, settle};
use super::{Action, GuardKind, PromptGuard, text, webhook};
use crate::ctx::{GuardAction, GuardInfo, GuardPhase};
use crate::llm::provider::Wire;

/// Runs the response guards over `body`; `Ok(true)` when a guard changed it.
pub async fn check(
    pg: &PromptGuard,
    wire: Wire,
    responses_api: bool,
    body: &mut Value,
    remote: &Remote<'_>,
    info: &mut GuardInfo,
) -> Result<bool, Rejected> {
    let mut changed = false;
    for g in &pg.response {
        let t = Timer::start(GuardPhase::Response, g.kind.name(), g.index);
        match &g.kind {
            GuardKind::Regex { action, rules } => {
                let mut found = Found::default();
                let mut hits = Vec::new();
                let mut rejected = false;
                text::response(wire, responses_api, body, &mut |_, s| {
                    if rejected {
                        return;
                    }
                    match action {
                        Action::Mask => {
                            if let Some(m) = rules.mask(s, &mut hits) {
                                *s = m;
                                changed = true;
                                found.action = GuardAction::Mask;
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
                if found.action == GuardAction::Mask {
                    found.masked = hits.len() as u32;
                }
                info.record(t, found);
            }
            GuardKind::Webhook(w) => {
                let mut texts = Vec::new();
                text::response(wire, responses_api, body, &mut |_, s| {
                    texts.push(("assistant".to_owned(), s.clone()))
                });
                if texts.is_empty() {
                    info.record(t, Found::default());
                    continue;
                }
                let called = webhook::call_webhook(
                    w,
                    remote.transport,
                    remote.log,
                    remote.headers,
                    false,
                    &texts,
                )
                .await;
                changed |= settle(g, t, called, w.fail_open, info, |replacements| {
                    let mut it = replacements.into_iter();
                    let mut changed = false;
                    text::response(wire, responses_api, body, &mut |_, s| {
                        if let Some(r) = it.next()
                            && *s != r
                        {
                            *s = r;
                            changed = true;
                        }
                    });
                    changed
                })?;
            }
            // Refused at load for responses.
            GuardKind::Moderation(_) => {}
        }
    }
    Ok(changed)
}
