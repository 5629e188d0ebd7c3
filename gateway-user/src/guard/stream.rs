//! Response guards on a stream: the text deltas of each choice (or content block, output
//! part, candidate) run through each regex guard's `Masker` as the events pass. Text that
//! could still become a match is held back and released with the next event, or flushed into
//! the event that ends its block; a `reject` ends the stream with an error event in the
//! client's format. Other events pass untouched.
//!
//! Provider shapes (before translation for the client):
//! - OpenAI chat: `choices[i].delta.content`; a `finish_reason` ends choice `i`.
//! - Responses: `response.output_text.delta` by (output, content) index, ended by
//!   `response.output_text.done`; events carrying whole texts (`.done`, `response.completed`)
//!   are masked whole, which gives the same text by the scanner's construction.
//! - Anthropic: `content_block_delta` `text_delta` by block index, ended by
//!   `content_block_stop`.
//! - Gemini: `candidates[i].content.parts[].text`; a `finishReason` ends candidate `i`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use super::outcome::{Found, Timer, rule_name};
use super::scan::{Hit, Masker, RuleSet};
use super::window::{RejectWith, RemoteGuard, Window};
use super::{Action, GuardKind, PromptGuard, Rejection};
use crate::ctx::{GuardAction, GuardInfo, GuardPhase, RequestLog};
use crate::llm::RouteType;
use crate::llm::provider::Wire;
use crate::llm::stream::EventFilter;
use crate::sse::SseEvent;

/// One regex guard's state over the stream.
struct Rule {
    index: usize,
    action: Action,
    rules: Arc<RuleSet>,
    rejection: Rejection,
    /// One masker per text key, created when the key first has text.
    maskers: Vec<(u64, Masker)>,
    hits: Vec<Hit>,
    busy: Duration,
}

pub struct StreamGuard {
    rules: Vec<Rule>,
    wire: Wire,
    responses_api: bool,
    /// The client's format, for the error event of a reject.
    client: RouteType,
    start: Instant,
    /// The last OpenAI chat chunk's envelope (id, created, model), for a synthetic flush chunk.
    envelope: Option<Value>,
    /// `Some` once a guard rejected: its index and what fired.
    rejected: Option<(usize, String)>,
    /// Webhook response guards, checking the stream window by window.
    window: Option<Window>,
    /// What a webhook rejection sends (set when a window is rejected).
    remote_stop: Option<(u16, String)>,
}

/// Webhook response guards for a stream: prepared calls and the transport that makes them.
pub type RemoteGuards = (Vec<RemoteGuard>, Arc<dyn super::Transport>);

impl StreamGuard {
    /// The stream guard for `pg`, or `None` when no response guard applies to streams.
    /// `remote` carries the webhook response guards, prepared for this request.
    pub fn new(
        pg: &PromptGuard,
        wire: Wire,
        responses_api: bool,
        client: RouteType,
        remote: Option<RemoteGuards>,
    ) -> Option<StreamGuard> {
        if !pg.streaming {
            return None;
        }
        let rules: Vec<Rule> = pg
            .response
            .iter()
            .filter_map(|g| match &g.kind {
                GuardKind::Regex { action, rules } => Some(Rule {
                    index: g.index,
                    action: *action,
                    rules: rules.clone(),
                    rejection: g.rejection.clone(),
                    maskers: Vec::new(),
                    hits: Vec::new(),
                    busy: Duration::ZERO,
                }),
                _ => None,
            })
            .collect();
        let window = remote
            .filter(|(g, _)| !g.is_empty())
            .map(|(g, t)| Window::new(g, t, wire, responses_api));
        if rules.is_empty() && window.is_none() {
            return None;
        }
        Some(StreamGuard {
            rules,
            wire,
            responses_api,
            client,
            start: Instant::now(),
            envelope: None,
            rejected: None,
            window,
            remote_stop: None,
        })
    }

    /// Events out of the regex stage: through the webhook window when there is one.
    fn route(&mut self, evs: Vec<SseEvent>, out: &mut Vec<SseEvent>) {
        match self.window.as_mut() {
            None => out.extend(evs),
            Some(w) => {
                for ev in evs {
                    if let Some(e) = w.push(ev) {
                        out.push(e);
                    }
                }
            }
        }
    }

    /// Runs `text` of `key` through every guard in order; `end` flushes the key.
    fn pass(&mut self, key: u64, text: &str, end: bool) -> Result<String, ()> {
        let mut cur = text.to_owned();
        for r in &mut self.rules {
            let t0 = Instant::now();
            let pos = match r.maskers.iter().position(|(k, _)| *k == key) {
                Some(p) => p,
                None => {
                    r.maskers.push((key, Masker::new()));
                    r.maskers.len() - 1
                }
            };
            let m = &mut r.maskers[pos].1;
            let before = r.hits.len();
            let mut out = String::with_capacity(cur.len());
            m.push(&r.rules, &cur, &mut out, &mut r.hits);
            if end {
                m.finish(&r.rules, &mut out, &mut r.hits);
                r.maskers.swap_remove(pos);
            }
            r.busy += t0.elapsed();
            if r.action == Action::Reject && r.hits.len() > before {
                let what = rule_name(r.rules.pattern(r.hits[before].pattern));
                self.rejected = Some((r.index, what));
                return Err(());
            }
            cur = out;
        }
        Ok(cur)
    }

    /// Masks a whole text (an event that repeats the full output) with every guard.
    fn whole(&mut self, text: &mut String) -> Result<(), ()> {
        for r in &mut self.rules {
            let t0 = Instant::now();
            // Counted already, delta by delta: these hits are not added again.
            let mut scratch = Vec::new();
            let masked = r.rules.mask(text, &mut scratch);
            r.busy += t0.elapsed();
            if let Some(m) = masked {
                if r.action == Action::Reject {
                    let what = rule_name(r.rules.pattern(scratch[0].pattern));
                    self.rejected = Some((r.index, what));
                    return Err(());
                }
                *text = m;
            }
        }
        Ok(())
    }

    /// Keys that still hold text.
    fn open_keys(&self) -> Vec<u64> {
        let mut keys: Vec<u64> = self
            .rules
            .iter()
            .flat_map(|r| r.maskers.iter().map(|(k, _)| *k))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The error event that ends a rejected stream, in the client's format.
    fn stop_bytes(&self) -> Bytes {
        let (status, message) = match &self.remote_stop {
            Some(s) => s.clone(),
            None => {
                let (index, _) = self.rejected.clone().unwrap_or_default();
                let rej = self
                    .rules
                    .iter()
                    .find(|r| r.index == index)
                    .map(|r| r.rejection.clone())
                    .unwrap_or_default();
                (
                    rej.status,
                    String::from_utf8_lossy(&rej.body).trim().to_owned(),
                )
            }
        };
        let mut out = BytesMut::new();
        match self.client {
            RouteType::Messages => {
                let data = json!({"type": "error", "error": {"type": "permission_error", "message": message}});
                SseEvent::encode(Some("error"), &data.to_string(), &mut out);
            }
            RouteType::GenerateContent => {
                let data = json!({"error": {"code": status, "message": message, "status": "PERMISSION_DENIED"}});
                SseEvent::encode(None, &data.to_string(), &mut out);
            }
            RouteType::Responses => {
                let data = json!({"type": "error", "code": "content_filter", "message": message, "param": null});
                SseEvent::encode(Some("error"), &data.to_string(), &mut out);
            }
            _ => {
                let data = json!({"error": {"message": message, "type": "content_filter", "param": null, "code": "content_filter"}});
                SseEvent::encode(None, &data.to_string(), &mut out);
            }
        }
        out.freeze()
    }

    fn event(&mut self, ev: SseEvent, out: &mut Vec<SseEvent>) -> Result<(), ()> {
        let Some(mut v) = ev.json().cloned() else {
            if ev.data == "[DONE]" {
                self.flush_all(out)?;
            }
            out.push(ev);
            return Ok(());
        };
        let changed = match (self.wire, self.responses_api) {
            (Wire::OpenAi, true) => self.responses_event(&mut v, out)?,
            (Wire::OpenAi, false) => self.chat_event(&mut v)?,
            (Wire::Anthropic, _) => self.anthropic_event(&mut v, out)?,
            (Wire::Gemini, _) => self.gemini_event(&mut v)?,
        };
        if changed {
            out.push(rebuild(ev.event.as_deref(), v));
        } else {
            out.push(ev);
        }
        Ok(())
    }

    fn chat_event(&mut self, v: &mut Value) -> Result<bool, ()> {
        let mut changed = false;
        if self.envelope.is_none() {
            self.envelope = Some(json!({
                "id": v.get("id"), "object": "chat.completion.chunk",
                "created": v.get("created"), "model": v.get("model"),
            }));
        }
        let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else {
            return Ok(false);
        };
        for ch in choices {
            let key = ch.get("index").and_then(Value::as_u64).unwrap_or(0);
            let end = ch.get("finish_reason").is_some_and(|f| !f.is_null());
            let text = ch
                .pointer("/delta/content")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if text.is_none() && !end {
                continue;
            }
            let t = text.clone().unwrap_or_default();
            let out = self.pass(key, &t, end)?;
            if text.as_deref() != Some(out.as_str()) && (text.is_some() || !out.is_empty()) {
                if let Some(d) = ch.get_mut("delta").and_then(Value::as_object_mut) {
                    d.insert("content".into(), Value::String(out));
                } else {
                    ch["delta"] = json!({"content": out});
                }
                changed = true;
            }
        }
        Ok(changed)
    }

    fn anthropic_event(&mut self, v: &mut Value, out: &mut Vec<SseEvent>) -> Result<bool, ()> {
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
        let key = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match ty {
            "content_block_delta"
                if v.pointer("/delta/type").and_then(Value::as_str) == Some("text_delta") =>
            {
                let text = v
                    .pointer("/delta/text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let masked = self.pass(key, &text, false)?;
                if masked != text {
                    v["delta"]["text"] = Value::String(masked);
                    return Ok(true);
                }
                Ok(false)
            }
            "content_block_stop" => {
                let rest = self.pass(key, "", true)?;
                if !rest.is_empty() {
                    let d = json!({"type": "content_block_delta", "index": key, "delta": {"type": "text_delta", "text": rest}});
                    out.push(rebuild(Some("content_block_delta"), d));
                }
                Ok(false)
            }
            "message_delta" | "message_stop" => {
                self.flush_all(out)?;
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    fn gemini_event(&mut self, v: &mut Value) -> Result<bool, ()> {
        let mut changed = false;
        let Some(cands) = v.get_mut("candidates").and_then(Value::as_array_mut) else {
            return Ok(false);
        };
        for (i, c) in cands.iter_mut().enumerate() {
            let key = c.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
            let end = c.get("finishReason").is_some_and(|f| !f.is_null());
            let parts = c
                .pointer_mut("/content/parts")
                .and_then(Value::as_array_mut);
            let mut last_text: Option<usize> = None;
            if let Some(parts) = parts {
                for (j, p) in parts.iter_mut().enumerate() {
                    if let Some(t) = p.get("text").and_then(Value::as_str).map(str::to_owned) {
                        let m = self.pass(key, &t, false)?;
                        if m != t {
                            p["text"] = Value::String(m);
                            changed = true;
                        }
                        last_text = Some(j);
                    }
                }
            }
            if end {
                let rest = self.pass(key, "", true)?;
                if !rest.is_empty() {
                    match (
                        last_text,
                        c.pointer_mut("/content/parts")
                            .and_then(Value::as_array_mut),
                    ) {
                        (Some(j), Some(parts)) => {
                            let t = parts[j]["text"].as_str().unwrap_or("").to_owned();
                            parts[j]["text"] = Value::String(t + &rest);
                        }
                        (None, Some(parts)) => parts.push(json!({"text": rest})),
                        (_, None) => {
                            c["content"] = json!({"role": "model", "parts": [{"text": rest}]})
                        }
                    }
                    changed = true;
                }
            }
        }
        Ok(changed)
    }

    fn responses_event(&mut self, v: &mut Value, out: &mut Vec<SseEvent>) -> Result<bool, ()> {
        let ty = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let key = v.get("output_index").and_then(Value::as_u64).unwrap_or(0) << 32
            | v.get("content_index").and_then(Value::as_u64).unwrap_or(0);
        match ty.as_str() {
            "response.output_text.delta" => {
                let text = v
                    .get("delta")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let m = self.pass(key, &text, false)?;
                if m != text {
                    v["delta"] = Value::String(m);
                    return Ok(true);
                }
                Ok(false)
            }
            "response.output_text.done" => {
                let rest = self.pass(key, "", true)?;
                if !rest.is_empty() {
                    let mut d = v.clone();
                    d["type"] = json!("response.output_text.delta");
                    if let Some(o) = d.as_object_mut() {
                        o.remove("text");
                        o.insert("delta".into(), Value::String(rest));
                    }
                    out.push(rebuild(Some("response.output_text.delta"), d));
                }
                self.whole_at(v, &["text"])
            }
            "response.content_part.done" => self.whole_at(v, &["part", "text"]),
            "response.output_item.done" => self.whole_in_list(v.get_mut("item"), "content"),
            "response.completed" | "response.incomplete" => {
                let mut changed = false;
                let outputs = v
                    .pointer_mut("/response/output")
                    .and_then(Value::as_array_mut);
                for item in outputs.into_iter().flatten() {
                    changed |= self.whole_in_list(Some(item), "content")?;
                }
                Ok(changed)
            }
            _ => Ok(false),
        }
    }

    fn whole_at(&mut self, v: &mut Value, path: &[&str]) -> Result<bool, ()> {
        let mut cur = &mut *v;
        for p in path {
            match cur.get_mut(*p) {
                Some(n) => cur = n,
                None => return Ok(false),
            }
        }
        let Some(s) = cur.as_str() else {
            return Ok(false);
        };
        let mut t = s.to_owned();
        self.whole(&mut t)?;
        if t != s {
            *cur = Value::String(t);
            return Ok(true);
        }
        Ok(false)
    }

    fn whole_in_list(&mut self, item: Option<&mut Value>, list: &str) -> Result<bool, ()> {
        let mut changed = false;
        let parts = item
            .and_then(|i| i.get_mut(list))
            .and_then(Value::as_array_mut);
        for p in parts.into_iter().flatten() {
            changed |= self.whole_at(p, &["text"])?;
        }
        Ok(changed)
    }

    /// Flushes every key that still holds text (the stream is ending).
    fn flush_all(&mut self, out: &mut Vec<SseEvent>) -> Result<(), ()> {
        for key in self.open_keys() {
            let rest = self.pass(key, "", true)?;
            if rest.is_empty() {
                continue;
            }
            match (self.wire, self.responses_api) {
                (Wire::Anthropic, _) => {
                    let d = json!({"type": "content_block_delta", "index": key, "delta": {"type": "text_delta", "text": rest}});
                    out.push(rebuild(Some("content_block_delta"), d));
                }
                (Wire::Gemini, _) => {
                    let d = json!({"candidates": [{"index": key, "content": {"role": "model", "parts": [{"text": rest}]}}]});
                    out.push(rebuild(None, d));
                }
                (Wire::OpenAi, true) => {
                    let d = json!({"type": "response.output_text.delta", "output_index": key >> 32, "content_index": key & 0xffff_ffff, "delta": rest});
                    out.push(rebuild(Some("response.output_text.delta"), d));
                }
                (Wire::OpenAi, false) => {
                    let mut d = self
                        .envelope
                        .clone()
                        .unwrap_or_else(|| json!({"object": "chat.completion.chunk"}));
                    d["choices"] =
                        json!([{"index": key, "delta": {"content": rest}, "finish_reason": null}]);
                    out.push(rebuild(None, d));
                }
            }
        }
        Ok(())
    }
}

/// An event with new JSON data (its parse kept for the handlers after).
pub(super) fn rebuild(event: Option<&str>, v: Value) -> SseEvent {
    let data = v.to_string();
    let mut raw = BytesMut::with_capacity(data.len() + 32);
    SseEvent::encode(event, &data, &mut raw);
    let parsed = std::cell::OnceCell::new();
    let _ = parsed.set(Some(v));
    SseEvent {
        event: event.map(str::to_owned),
        data,
        raw: raw.freeze(),
        parsed,
    }
}

impl EventFilter for StreamGuard {
    fn on_event(&mut self, ev: SseEvent, out: &mut Vec<SseEvent>) -> Result<(), Bytes> {
        if self.window.is_none() {
            return self.event(ev, out).map_err(|()| self.stop_bytes());
        }
        let mut evs = Vec::new();
        let r = self.event(ev, &mut evs);
        self.route(evs, out);
        r.map_err(|()| self.stop_bytes())
    }

    fn on_end(&mut self, out: &mut Vec<SseEvent>) -> Result<(), Bytes> {
        let mut evs = Vec::new();
        let r = self.flush_all(&mut evs);
        self.route(evs, out);
        if let Some(w) = self.window.as_mut() {
            w.end();
        }
        r.map_err(|()| self.stop_bytes())
    }

    fn busy(&self) -> bool {
        self.window.as_ref().is_some_and(Window::busy)
    }

    fn poll_check(
        &mut self,
        cx: &mut std::task::Context<'_>,
        out: &mut Vec<SseEvent>,
    ) -> std::task::Poll<Result<(), Bytes>> {
        let Some(w) = self.window.as_mut() else {
            return std::task::Poll::Ready(Ok(()));
        };
        match w.poll(cx, out) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(Ok(())) => std::task::Poll::Ready(Ok(())),
            std::task::Poll::Ready(Err((index, why))) => {
                let (status, message, what) = match why {
                    RejectWith::Body(b) => (403, b, "webhook".to_owned()),
                    RejectWith::Unavailable(e) => (
                        503,
                        format!("the webhook guard could not check this response: {e}"),
                        "webhook unavailable, failClosed".to_owned(),
                    ),
                };
                self.rejected = Some((index, what));
                self.remote_stop = Some((status, message));
                std::task::Poll::Ready(Err(self.stop_bytes()))
            }
        }
    }

    fn finish(&mut self, log: &mut RequestLog) {
        let info: &mut GuardInfo = log.guard.get_or_insert_with(Default::default);
        let end = Instant::now();
        for r in &self.rules {
            let mut found = Found::default();
            for h in &r.hits {
                found.rule(rule_name(r.rules.pattern(h.pattern)));
            }
            let rejected = self.rejected.as_ref().is_some_and(|(i, _)| *i == r.index);
            if rejected {
                found.action = GuardAction::Reject;
            } else if !r.hits.is_empty() {
                found.action = GuardAction::Mask;
                found.masked = r.hits.len() as u32;
            }
            let t = Timer {
                phase: GuardPhase::Response,
                kind: "regex",
                index: r.index,
                start: self.start,
            };
            info.record_span(t, found, end, r.busy);
        }
        if let Some(w) = self.window.as_mut() {
            for c in std::mem::take(&mut w.calls) {
                let busy = c.end - c.start;
                let t = Timer {
                    phase: GuardPhase::Response,
                    kind: "webhook",
                    index: c.index,
                    start: c.start,
                };
                info.record_span(t, c.found, c.end, busy);
            }
        }
        if let Some((i, what)) = &self.rejected {
            let kind = if self.remote_stop.is_some() {
                "webhook"
            } else {
                "regex"
            };
            log.error.get_or_insert_with(|| {
                format!("response stream rejected by guard {kind}[{i}] ({what})")
            });
        }
    }
}
