//! The request log behind `GET /_sim/requests`: every provider request as it arrived,
//! headers included (credentials too, on purpose: tests check what the gateway injected or
//! stripped), so tests can assert on what the gateway actually sent upstream.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::SimRequest;

/// Oldest entries are dropped past this many, so load tests cannot exhaust memory.
pub const MAX_RECORDS: usize = 10_000;
/// Non-JSON bodies are kept up to this many bytes.
const MAX_TEXT_BODY: usize = 64 * 1024;

/// One request the simulator received.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RecordedRequest {
    /// Arrival order, starting at 0 after each reset.
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-case header name to value; repeated headers are joined with `, `.
    pub headers: Map<String, Json>,
    /// The body parsed as JSON, or null.
    pub body: Json,
    /// The body as text when it is not JSON (truncated to 64 KiB).
    pub body_text: Option<String>,
    /// Which simulated endpoint answered (`openai.chat`, `anthropic.messages`, ...).
    pub endpoint: Option<String>,
    /// Status the simulator answered with, once known.
    pub status: Option<u16>,
    /// The fault spec the request carried, if any.
    pub fault: Option<String>,
    pub received_unix_ms: u64,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(Json::as_str)
    }
}

#[derive(Debug, Default)]
struct Inner {
    next_seq: u64,
    records: Vec<RecordedRequest>,
}

/// Thread-safe request log.
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Inner>,
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the Vec inconsistent; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a request and returns its sequence number.
    pub fn record(&self, req: &SimRequest, endpoint: Option<&str>) -> u64 {
        let mut headers = Map::new();
        for name in req.headers.keys() {
            let joined = req
                .headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", ");
            headers.insert(name.as_str().to_string(), Json::String(joined));
        }
        let (body, body_text) = if req.body.is_empty() {
            (Json::Null, None)
        } else {
            match serde_json::from_slice::<Json>(&req.body) {
                Ok(v) => (v, None),
                Err(_) => {
                    let end = req.body.len().min(MAX_TEXT_BODY);
                    (
                        Json::Null,
                        Some(String::from_utf8_lossy(&req.body[..end]).into_owned()),
                    )
                }
            }
        };
        let received_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        if inner.records.len() >= MAX_RECORDS {
            inner.records.remove(0);
        }
        inner.records.push(RecordedRequest {
            seq,
            method: req.method.as_str().to_string(),
            path: req.path.clone(),
            query: req.query.clone(),
            headers,
            body,
            body_text,
            endpoint: endpoint.map(str::to_string),
            status: None,
            fault: None,
            received_unix_ms,
        });
        seq
    }

    /// Notes the outcome of request `seq`.
    pub fn finish(&self, seq: u64, status: u16, fault: Option<&str>) {
        let mut inner = self.lock();
        if let Some(r) = inner.records.iter_mut().rev().find(|r| r.seq == seq) {
            r.status = Some(status);
            r.fault = fault.filter(|f| !f.is_empty()).map(str::to_string);
        }
    }

    pub fn list(&self) -> Vec<RecordedRequest> {
        self.lock().records.clone()
    }

    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.records.clear();
        inner.next_seq = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

    #[test]
    fn records_headers_body_and_outcome() {
        let rec = Recorder::default();
        let mut req = SimRequest::post_json("/v1/chat/completions?x=1", &json!({"model": "m"}));
        req.headers
            .insert("authorization", HeaderValue::from_static("Bearer k"));
        req.headers.append("x-multi", HeaderValue::from_static("a"));
        req.headers.append("x-multi", HeaderValue::from_static("b"));
        let seq = rec.record(&req, Some("openai.chat"));
        rec.finish(seq, 429, Some("429"));
        let all = rec.list();
        assert_eq!(all.len(), 1);
        let r = &all[0];
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.query.as_deref(), Some("x=1"));
        assert_eq!(r.header("Authorization"), Some("Bearer k"));
        assert_eq!(r.header("x-multi"), Some("a, b"));
        assert_eq!(r.body["model"], "m");
        assert_eq!(r.status, Some(429));
        assert_eq!(r.fault.as_deref(), Some("429"));
        rec.clear();
        assert!(rec.list().is_empty());
        assert_eq!(rec.record(&req, None), 0);
    }

    #[test]
    fn keeps_text_bodies_and_bounds_memory() {
        let rec = Recorder::default();
        let mut req = SimRequest::post_json("/p", &json!({}));
        req.body = bytes::Bytes::from_static(b"{not json");
        rec.record(&req, None);
        assert_eq!(rec.list()[0].body_text.as_deref(), Some("{not json"));
        for _ in 0..MAX_RECORDS + 5 {
            rec.record(&req, None);
        }
        let all = rec.list();
        assert_eq!(all.len(), MAX_RECORDS);
        assert_eq!(all[0].seq, 6);
    }
}
