//! Webhook response guards on a stream, in windows, as agentgateway does: events carrying text
//! are held (after the regex guards) until about `WINDOW_BYTES` of text have gathered, a block
//! ends, or the stream ends; then every webhook guard checks the window's text per choice, in
//! order. Pass releases the held events; a mask rewrites their text (the whole replacement in
//! the window's first event of that choice, the others emptied); a reject ends the stream with
//! an error event; a failed call follows `failureMode`.
//!
//! A window is checked on its own: text that only reads as a match across two windows can
//! pass (regex guards have no such gap). Text already released is never retracted.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::Webhook;
use super::outcome::Found;
use super::webhook::{self, Called, Prepared, Verdict};
use crate::ctx::GuardAction;
use crate::llm::provider::Wire;
use crate::sse::SseEvent;

/// Text gathered before a window is checked.
pub const WINDOW_BYTES: usize = 1024;

/// One webhook response guard, ready to be called from a stream.
pub struct RemoteGuard {
    pub index: usize,
    pub webhook: Arc<Webhook>,
    pub prepared: Prepared,
    pub rejection: super::Rejection,
}

/// One finished webhook call of the stream (a CLIENT span at the end).
pub struct CallRecord {
    pub index: usize,
    pub start: Instant,
    pub end: Instant,
    pub found: Found,
}

/// What a window's checks decided.
pub enum Decision {
    Release,
    /// Final text per key.
    Mask(Vec<(u64, String)>),
    /// The guard index and what the client gets.
    Reject(usize, bytes::Bytes),
}

type Checked = (
    Vec<CallRecord>,
    Result<Option<Vec<String>>, (usize, RejectWith)>,
);

/// Why a window was rejected, for the error event.
pub enum RejectWith {
    /// The webhook's own body.
    Body(String),
    /// The webhook could not be reached (`failClosed`).
    Unavailable(String),
}

pub struct Window {
    guards: Arc<Vec<RemoteGuard>>,
    transport: Arc<dyn super::Transport>,
    wire: Wire,
    responses: bool,
    /// Held events, with the text keys each carries.
    held: Vec<SseEvent>,
    /// Events that arrived while a check ran: they join the next window.
    backlog: std::collections::VecDeque<SseEvent>,
    /// Responses API: the released text per key, for the events that repeat it whole.
    released: Vec<(u64, String)>,
    /// Text per key in the held events, in first-seen order.
    text: Vec<(u64, String)>,
    bytes: usize,
    check: Option<BoxFuture<'static, Checked>>,
    keys: Vec<u64>,
    pub calls: Vec<CallRecord>,
    pub rejected: Option<usize>,
    /// The stream ended: a backlog drained after a check is checked at once.
    ended: bool,
}

impl Window {
    pub fn new(
        guards: Vec<RemoteGuard>,
        transport: Arc<dyn super::Transport>,
        wire: Wire,
        responses: bool,
    ) -> Window {
        Window {
            guards: Arc::new(guards),
            transport,
            wire,
            responses,
            held: Vec::new(),
            backlog: std::collections::VecDeque::new(),
            released: Vec::new(),
            text: Vec::new(),
            bytes: 0,
            check: None,
            keys: Vec::new(),
            calls: Vec::new(),
            rejected: None,
            ended: false,
        }
    }

    pub fn busy(&self) -> bool {
        self.check.is_some()
    }

    /// Takes an event (already through the regex guards). Returns it when nothing is held and
    /// it carries no text, so it passes at once; otherwise holds it, and starts a check when
    /// the window is full or `boundary` (a block or the stream ends).
    pub fn push(&mut self, ev: SseEvent) -> Option<SseEvent> {
        if self.check.is_some() {
            self.backlog.push_back(ev);
            return None;
        }
        let texts = texts_of(self.wire, self.responses, &ev);
        // An event without text (a block's or the stream's end, a ping) closes the window.
        let boundary = texts.is_empty();
        if texts.is_empty() && self.held.is_empty() {
            return Some(ev);
        }
        for (k, t) in texts {
            self.bytes += t.len();
            match self.text.iter_mut().find(|(key, _)| *key == k) {
                Some((_, s)) => s.push_str(&t),
                None => self.text.push((k, t)),
            }
        }
        self.held.push(ev);
        if self.bytes >= WINDOW_BYTES || boundary {
            self.start();
        }
        None
    }

    /// The stream ended: check what is held.
    pub fn end(&mut self) {
        self.ended = true;
        if !self.held.is_empty() && self.check.is_none() {
            self.start();
        }
    }

    fn start(&mut self) {
        if self.text.iter().all(|(_, t)| t.is_empty()) {
            // Nothing to check: the events go out as they are on the next poll.
            self.keys.clear();
            self.check = Some(Box::pin(async { (Vec::new(), Ok(None)) }));
            return;
        }
        self.keys = self.text.iter().map(|(k, _)| *k).collect();
        let texts: Vec<(String, String)> = self
            .text
            .iter()
            .map(|(_, t)| ("assistant".to_owned(), t.clone()))
            .collect();
        let guards = Arc::clone(&self.guards);
        let transport = Arc::clone(&self.transport);
        self.check = Some(Box::pin(run_checks(guards, transport, texts)));
    }

    /// Drives the check; when done, the held events (or the rejection) go out.
    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<SseEvent>,
    ) -> Poll<Result<(), (usize, RejectWith)>> {
        let Some(f) = self.check.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let (calls, result) = match f.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        self.check = None;
        self.calls.extend(calls);
        let held = std::mem::take(&mut self.held);
        self.text.clear();
        self.bytes = 0;
        let released: Vec<SseEvent> = match result {
            Err((i, why)) => {
                self.rejected = Some(i);
                return Poll::Ready(Err((i, why)));
            }
            Ok(None) => held,
            Ok(Some(masked)) => {
                let mut pending: Vec<(u64, Option<String>)> = self
                    .keys
                    .iter()
                    .copied()
                    .zip(masked.into_iter().map(Some))
                    .collect();
                held.into_iter()
                    .map(|ev| rewrite(self.wire, self.responses, ev, &mut pending))
                    .collect()
            }
        };
        for ev in released {
            let ev = if self.responses {
                self.whole_texts(ev)
            } else {
                ev
            };
            out.push(ev);
        }
        // What arrived meanwhile: into the next window (which may start its check now).
        while let Some(ev) = self.backlog.pop_front() {
            if let Some(e) = self.push(ev) {
                out.push(e);
            }
        }
        if self.ended {
            self.end();
        }
        Poll::Ready(Ok(()))
    }

    /// Responses API: deltas add to the released text per key; events that repeat the whole
    /// text (`output_text.done`, `response.completed`) get the released text, so they say what
    /// the client was sent.
    fn whole_texts(&mut self, ev: SseEvent) -> SseEvent {
        let Some(v) = ev.json() else { return ev };
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
        match ty {
            "response.output_text.delta" => {
                if let Some(t) = v.get("delta").and_then(Value::as_str) {
                    let k = responses_key(v);
                    match self.released.iter_mut().find(|(key, _)| *key == k) {
                        Some((_, s)) => s.push_str(t),
                        None => self.released.push((k, t.to_owned())),
                    }
                }
                ev
            }
            "response.output_text.done" => {
                let k = responses_key(v);
                let Some((_, text)) = self.released.iter().find(|(key, _)| *key == k) else {
                    return ev;
                };
                let mut v = v.clone();
                v["text"] = Value::String(text.clone());
                super::stream::rebuild(ev.event.as_deref(), v)
            }
            "response.completed" | "response.incomplete" => {
                let mut v = v.clone();
                let outputs = v
                    .pointer_mut("/response/output")
                    .and_then(Value::as_array_mut);
                for (i, item) in outputs.into_iter().flatten().enumerate() {
                    let parts = item.get_mut("content").and_then(Value::as_array_mut);
                    for (j, p) in parts.into_iter().flatten().enumerate() {
                        let k = (i as u64) << 32 | j as u64;
                        if let Some((_, t)) = self.released.iter().find(|(key, _)| *key == k)
                            && p.get("text").is_some()
                        {
                            p["text"] = Value::String(t.clone());
                        }
                    }
                }
                super::stream::rebuild(ev.event.as_deref(), v)
            }
            _ => ev,
        }
    }
}

/// Every guard in order over the window's texts; a mask feeds the next guard.
async fn run_checks(
    guards: Arc<Vec<RemoteGuard>>,
    transport: Arc<dyn super::Transport>,
    mut texts: Vec<(String, String)>,
) -> Checked {
    let mut calls = Vec::new();
    let mut masked = false;
    for g in guards.iter() {
        let start = Instant::now();
        let Called { result, http } =
            webhook::send_webhook(&g.webhook, &g.prepared, transport.as_ref(), false, &texts).await;
        let mut found = Found {
            http: Some(http),
            ..Found::default()
        };
        let mut outcome = Ok(());
        match result {
            Ok(Verdict::Pass) | Ok(Verdict::Flagged(_)) => {}
            Ok(Verdict::Mask(new)) => {
                let changed = new.iter().zip(&texts).any(|(n, (_, o))| n != o);
                if changed {
                    found.action = GuardAction::Mask;
                    found.masked = 1;
                    found.rule("webhook".into());
                    masked = true;
                    for (slot, n) in texts.iter_mut().zip(new) {
                        slot.1 = n;
                    }
                }
            }
            Ok(Verdict::Reject { body, .. }) => {
                found.action = GuardAction::Reject;
                found.rule("webhook".into());
                outcome = Err(RejectWith::Body(body));
            }
            Err(e) if g.webhook.fail_open => {
                found.action = GuardAction::FailOpen;
                found.error = Some(e);
            }
            Err(e) => {
                found.action = GuardAction::Reject;
                found.error = Some(e.clone());
                outcome = Err(RejectWith::Unavailable(e));
            }
        }
        calls.push(CallRecord {
            index: g.index,
            start,
            end: Instant::now(),
            found,
        });
        if let Err(why) = outcome {
            return (calls, Err((g.index, why)));
        }
    }
    let result = masked.then(|| texts.into_iter().map(|(_, t)| t).collect());
    (calls, Ok(result))
}

/// The text deltas an event carries, by key (see `stream.rs` for the keys).
pub fn texts_of(wire: Wire, responses: bool, ev: &SseEvent) -> Vec<(u64, String)> {
    let Some(v) = ev.json() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match (wire, responses) {
        (Wire::OpenAi, false) => {
            for ch in v
                .get("choices")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(t) = ch.pointer("/delta/content").and_then(Value::as_str) {
                    let k = ch.get("index").and_then(Value::as_u64).unwrap_or(0);
                    out.push((k, t.to_owned()));
                }
            }
        }
        (Wire::OpenAi, true) => {
            if v.get("type").and_then(Value::as_str) == Some("response.output_text.delta")
                && let Some(t) = v.get("delta").and_then(Value::as_str)
            {
                out.push((responses_key(v), t.to_owned()));
            }
        }
        (Wire::Anthropic, _) => {
            if v.pointer("/delta/type").and_then(Value::as_str) == Some("text_delta")
                && let Some(t) = v.pointer("/delta/text").and_then(Value::as_str)
            {
                out.push((
                    v.get("index").and_then(Value::as_u64).unwrap_or(0),
                    t.to_owned(),
                ));
            }
        }
        (Wire::Gemini, _) => {
            for (i, c) in v
                .get("candidates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let k = c.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
                let t: String = c
                    .pointer("/content/parts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect();
                if !t.is_empty() {
                    out.push((k, t));
                }
            }
        }
    }
    out
}

pub fn responses_key(v: &Value) -> u64 {
    v.get("output_index").and_then(Value::as_u64).unwrap_or(0) << 32
        | v.get("content_index").and_then(Value::as_u64).unwrap_or(0)
}

/// Puts the window's masked text into its events: a key's whole text into its first event,
/// empty text into the rest.
fn rewrite(
    wire: Wire,
    responses: bool,
    ev: SseEvent,
    pending: &mut [(u64, Option<String>)],
) -> SseEvent {
    let keys: Vec<u64> = texts_of(wire, responses, &ev)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    if keys.is_empty() {
        return ev;
    }
    let Some(mut v) = ev.json().cloned() else {
        return ev;
    };
    let mut take = |k: u64| -> String {
        pending
            .iter_mut()
            .find(|(key, _)| *key == k)
            .and_then(|(_, t)| t.take())
            .unwrap_or_default()
    };
    match (wire, responses) {
        (Wire::OpenAi, false) => {
            for ch in v
                .get_mut("choices")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let k = ch.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(c) = ch.pointer_mut("/delta/content")
                    && c.is_string()
                {
                    *c = Value::String(take(k));
                }
            }
        }
        (Wire::OpenAi, true) => {
            let k = responses_key(&v);
            v["delta"] = Value::String(take(k));
        }
        (Wire::Anthropic, _) => {
            let k = v.get("index").and_then(Value::as_u64).unwrap_or(0);
            v["delta"]["text"] = Value::String(take(k));
        }
        (Wire::Gemini, _) => {
            for (i, c) in v
                .get_mut("candidates")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let k = c.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
                let mut first = true;
                for p in c
                    .pointer_mut("/content/parts")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if p.get("text").is_some() {
                        p["text"] = Value::String(if first { take(k) } else { String::new() });
                        first = false;
                    }
                }
            }
        }
    }
    super::stream::rebuild(ev.event.as_deref(), v)
}

/// Time spent waiting on webhook calls, for the span's busy time.
pub fn calls_busy(calls: &[CallRecord], index: usize) -> Duration {
    calls
        .iter()
        .filter(|c| c.index == index)
        .map(|c| c.end - c.start)
        .sum()
}
