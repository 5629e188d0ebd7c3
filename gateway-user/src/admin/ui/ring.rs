//! The viewer's memory: the most recent finished requests in a bounded ring, and per-minute
//! totals by route and model for the overview.
//!
//! The `telemetry` thread hands each finished `RequestLog` here (`RequestSink::record`) after
//! its log line and spans are written: the record is moved in, not copied, and the oldest one
//! is dropped once the ring is full, so memory is bounded by `config.ui.recentRequests`
//! records. Readers (the admin server) take `Arc`s of the entries under the lock and format
//! them after releasing it, so a page left open never holds the writer up for long.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use crate::ctx::RequestLog;
use crate::telemetry::RequestSink;

/// One kept request: its sequence number (the API's `id`) and its record.
#[derive(Debug)]
pub struct Entry {
    pub id: u64,
    pub log: Box<RequestLog>,
}

/// How many whole minutes of totals are kept for the overview.
pub const MINUTES: usize = 60;

/// Totals of one (route, model) pair over one minute.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub requests: u64,
    /// See `is_error`.
    pub errors: u64,
    /// 4xx answers.
    pub client_errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// USD of the priced requests (exact), and how many were priced.
    pub cost_usd: rust_decimal::Decimal,
    pub priced: u64,
    pub duration_ms: f64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.client_errors += o.client_errors;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cost_usd += o.cost_usd;
        self.priced += o.priced;
        self.duration_ms += o.duration_ms;
    }

    fn of(log: &RequestLog) -> Totals {
        let status = log.status.unwrap_or(0);
        let llm = log.llm.as_ref();
        let cost = llm.and_then(|l| l.cost.as_ref()).and_then(|c| c.total());
        Totals {
            requests: 1,
            errors: u64::from(is_error(log)),
            client_errors: u64::from((400..500).contains(&status)),
            input_tokens: llm.and_then(|l| l.input_tokens).unwrap_or(0),
            output_tokens: llm.and_then(|l| l.output_tokens).unwrap_or(0),
            cost_usd: cost.unwrap_or_default(),
            priced: u64::from(cost.is_some()),
            duration_ms: log.duration().as_secs_f64() * 1000.0,
        }
    }
}

/// Calls of one MCP tool over one minute.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolCalls {
    pub calls: u64,
    pub errors: u64,
}

/// One minute of totals. Keys are few (routes × models seen), so a vector beats a map.
#[derive(Debug, Default)]
pub struct Minute {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    pub by_route_model: Vec<(Arc<str>, Arc<str>, Totals)>,
    /// (route, tool) → calls.
    pub tools: Vec<(Arc<str>, Arc<str>, ToolCalls)>,
}

/// Finds the slot for `(a, b)` in `v`, adding it if new; allocates only for a new key.
fn slot<'a, T: Default>(v: &'a mut Vec<(Arc<str>, Arc<str>, T)>, a: &str, b: &str) -> &'a mut T {
    let i = match v.iter().position(|(x, y, _)| &**x == a && &**y == b) {
        Some(i) => i,
        None => {
            v.push((a.into(), b.into(), T::default()));
            v.len() - 1
        }
    };
    &mut v[i].2
}

#[derive(Debug, Default)]
struct Inner {
    entries: VecDeque<Arc<Entry>>,
    next_id: u64,
    minutes: VecDeque<Minute>,
}

/// The ring of recent requests and the per-minute totals.
#[derive(Debug)]
pub struct Recent {
    capacity: usize,
    inner: Mutex<Inner>,
}

/// The model a request is counted under: the one that answered, else the one asked for.
pub fn model_of(log: &RequestLog) -> &str {
    log.llm
        .as_ref()
        .and_then(|l| l.response_model.as_deref().or(l.request_model.as_deref()))
        .unwrap_or("")
}

/// A 5xx answer, or a request that failed before any answer. A client that hangs up after
/// its answer started (common for MCP notifications and streams) is not an error here.
pub fn is_error(log: &RequestLog) -> bool {
    match log.status {
        Some(s) => s >= 500,
        None => log.error.is_some(),
    }
}

pub fn route_of(log: &RequestLog) -> &str {
    log.route.as_deref().unwrap_or("")
}

impl Recent {
    /// A ring of `capacity` requests (at least 1: a size of 0 means no ring at all, and the
    /// caller then creates none).
    pub fn new(capacity: usize) -> Arc<Recent> {
        Arc::new(Recent {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The kept requests, newest first, and the id the next request will get.
    pub fn snapshot(&self) -> (Vec<Arc<Entry>>, u64) {
        let Ok(g) = self.inner.lock() else {
            return (Vec::new(), 0);
        };
        (g.entries.iter().rev().cloned().collect(), g.next_id)
    }

    pub fn get(&self, id: u64) -> Option<Arc<Entry>> {
        let g = self.inner.lock().ok()?;
        let first = g.entries.front()?.id;
        let i = usize::try_from(id.checked_sub(first)?).ok()?;
        g.entries.get(i).cloned()
    }

    /// Reads the per-minute totals (oldest first) under the lock.
    pub fn minutes<R>(&self, f: impl FnOnce(&VecDeque<Minute>) -> R) -> Option<R> {
        let g = self.inner.lock().ok()?;
        Some(f(&g.minutes))
    }

    fn count(inner: &mut Inner, log: &RequestLog) {
        let end = log.start_time
            + log
                .end
                .map_or(Duration::ZERO, |e| e.saturating_duration_since(log.start));
        let minute = end
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 60);
        let i = match inner.minutes.iter().rposition(|m| m.minute == minute) {
            Some(i) => i,
            None => {
                inner.minutes.push_back(Minute {
                    minute,
                    ..Minute::default()
                });
                // A request may end a little before the newest one counted: keep minutes in
                // order, and only the last `MINUTES` of them.
                inner.minutes.make_contiguous().sort_by_key(|m| m.minute);
                while inner.minutes.len() > MINUTES {
                    inner.minutes.pop_front();
                }
                match inner.minutes.iter().rposition(|m| m.minute == minute) {
                    Some(i) => i,
                    None => return,
                }
            }
        };
        let m = &mut inner.minutes[i];
        let route = route_of(log);
        slot(&mut m.by_route_model, route, model_of(log)).add(&Totals::of(log));
        if let Some(mcp) = &log.mcp
            && let Some(tool) = &mcp.tool_name
        {
            let t = slot(&mut m.tools, route, tool);
            t.calls += 1;
            t.errors += u64::from(mcp.tool_error.is_some() || is_error(log));
        }
    }
}

impl RequestSink for Recent {
    fn record(&self, log: Box<RequestLog>) {
        let evicted = {
            let Ok(mut g) = self.inner.lock() else { return };
            Self::count(&mut g, &log);
            let id = g.next_id;
            g.next_id += 1;
            g.entries.push_back(Arc::new(Entry { id, log }));
            if g.entries.len() > self.capacity {
                g.entries.pop_front()
            } else {
                None
            }
        };
        // Freed outside the lock: a reader is never held up by the oldest record's drop.
        drop(evicted);
    }
}

/// Rough heap and inline bytes one kept record holds, for the overview's memory figure.
pub fn approx_bytes(log: &RequestLog) -> usize {
    let s = |x: &String| x.capacity();
    let o = |x: &Option<String>| x.as_ref().map_or(0, String::capacity);
    let json = |v: &Option<serde_json::Value>| v.as_ref().map_or(0, |v| v.to_string().len());
    let mut n = std::mem::size_of::<Entry>()
        + std::mem::size_of::<RequestLog>()
        + s(&log.gateway)
        + s(&log.listener)
        + o(&log.route)
        + o(&log.endpoint)
        + o(&log.backend)
        + s(&log.method)
        + s(&log.host)
        + s(&log.path)
        + s(&log.uri)
        + o(&log.error);
    for (k, v) in log.request_headers.iter().chain(&log.response_headers) {
        n += k.capacity() + v.capacity() + 48;
    }
    if let Some(l) = &log.llm {
        n += std::mem::size_of_val(l)
            + s(&l.provider)
            + o(&l.request_model)
            + o(&l.response_model)
            + json(&l.prompt)
            + l.completion
                .as_ref()
                .map_or(0, |c| c.iter().map(|x| x.capacity() + 24).sum())
            + l.params
                .iter()
                .map(|(k, v)| k.len() + v.to_string().len() + 64)
                .sum::<usize>()
            + l.finish_reasons
                .iter()
                .map(|x| x.capacity() + 24)
                .sum::<usize>()
            + l.tool_calls
                .iter()
                .map(|x| x.capacity() + 24)
                .sum::<usize>();
    }
    if let Some(m) = &log.mcp {
        n += std::mem::size_of_val(m)
            + o(&m.method)
            + o(&m.session_id)
            + o(&m.target)
            + o(&m.tool_name)
            + json(&m.tool_arguments)
            + json(&m.tool_result)
            + json(&m.tool_error)
            + m.target_calls.len() * 96;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::LlmInfo;

    fn log(route: &str, model: &str, status: u16) -> Box<RequestLog> {
        let mut l = RequestLog::new("gw".into(), "l".into());
        l.route = Some(route.into());
        l.status = Some(status);
        l.llm = Some(LlmInfo {
            request_model: Some(model.into()),
            input_tokens: Some(3),
            output_tokens: Some(5),
            ..LlmInfo::default()
        });
        l.end = Some(l.start);
        Box::new(l)
    }

    #[test]
    fn ring_keeps_the_newest_and_finds_them_by_id() {
        let r = Recent::new(3);
        for i in 0..5 {
            r.record(log("r", &format!("m{i}"), 200));
        }
        let (entries, next) = r.snapshot();
        assert_eq!(next, 5);
        let ids: Vec<u64> = entries.iter().map(|e| e.id).collect();
        assert_eq!(ids, [4, 3, 2]);
        assert_eq!(model_of(&r.get(3).expect("kept").log), "m3");
        assert!(r.get(1).is_none(), "evicted");
        assert!(r.get(5).is_none(), "not yet recorded");
    }

    #[test]
    fn minutes_total_by_route_and_model() {
        let r = Recent::new(10);
        r.record(log("a", "m", 200));
        r.record(log("a", "m", 503));
        r.record(log("a", "m", 429));
        r.record(log("b", "m", 200));
        let totals = r
            .minutes(|ms| {
                let m = ms.back().expect("a minute");
                m.by_route_model
                    .iter()
                    .map(|(r, m, t)| (r.to_string(), m.to_string(), t.clone()))
                    .collect::<Vec<_>>()
            })
            .expect("lock");
        assert_eq!(totals.len(), 2);
        let a = &totals[0].2;
        assert_eq!((a.requests, a.errors, a.client_errors), (3, 1, 1));
        assert_eq!((a.input_tokens, a.output_tokens), (9, 15));
        assert_eq!(totals[1].0, "b");
    }
}
