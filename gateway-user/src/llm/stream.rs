//! Streamed LLM responses: SSE events are parsed as they pass, observed for usage and text, and
//! forwarded (or translated) one by one. Nothing is buffered beyond one partial event.

use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::ctx::{LlmInfo, RequestLog};
use crate::sse::{SseError, SseEvent, SseParser};

/// Rewrites upstream events before the handler observes them (prompt guards mask or hold back
/// text here, so telemetry sees what the client sees).
pub trait EventFilter: Send {
    /// One upstream event: push what the handler should see instead (the event, rewritten,
    /// preceded by extra events, or nothing). `Err` ends the stream with these client bytes.
    fn on_event(&mut self, ev: SseEvent, out: &mut Vec<SseEvent>) -> Result<(), Bytes>;
    /// Upstream ended cleanly: events that flush what was held back.
    fn on_end(&mut self, out: &mut Vec<SseEvent>) -> Result<(), Bytes>;
    /// Records the filter's outcome into the request's log, once, when the body completes.
    fn finish(&mut self, log: &mut RequestLog);
    /// The filter waits on a remote check (a guard webhook): no more events until
    /// `poll_check` completes.
    fn busy(&self) -> bool {
        false
    }
    /// Drives the remote check; when it completes, pushes the events it released.
    fn poll_check(
        &mut self,
        _cx: &mut Context<'_>,
        _out: &mut Vec<SseEvent>,
    ) -> Poll<Result<(), Bytes>> {
        Poll::Ready(Ok(()))
    }
}

/// Per-format stream logic: observes events into `LlmInfo` and writes what the client gets.
pub trait StreamHandler: Send {
    /// One complete upstream event. Append the client's bytes to `out` (nothing to drop it).
    fn on_event(&mut self, ev: &SseEvent, out: &mut BytesMut, info: &mut LlmInfo);
    /// Upstream ended cleanly. Append any closing bytes the client format needs.
    fn on_end(&mut self, _out: &mut BytesMut, _info: &mut LlmInfo) {}
    /// Whether the upstream stream reached its protocol-level end (`[DONE]`, `message_stop`...).
    fn completed(&self) -> bool;
}

/// Drives a `StreamHandler` over raw body chunks.
pub struct SseTransform {
    parser: SseParser,
    handler: Box<dyn StreamHandler>,
    start: Instant,
    capture_completion: bool,
    /// Events whose data was neither JSON nor `[DONE]` (forwarded as they are, but logged).
    malformed: u32,
    filter: Option<Box<dyn EventFilter>>,
    /// A provider whose stream is not SSE (Bedrock's event-stream frames): decoded and
    /// rewritten into SSE chunks before the filter and the handler see them.
    adapter: Option<Adapter>,
    /// The filter ended the stream: nothing more goes to the client.
    stopped: bool,
    /// Upstream ended and the filter has seen the end (`finish_input`).
    input_done: bool,
    scratch: Vec<SseEvent>,
}

impl SseTransform {
    pub fn new(handler: Box<dyn StreamHandler>, start: Instant, capture_completion: bool) -> Self {
        SseTransform {
            parser: SseParser::default(),
            handler,
            start,
            capture_completion,
            malformed: 0,
            filter: None,
            adapter: None,
            stopped: false,
            input_done: false,
            scratch: Vec::new(),
        }
    }

    /// Runs `filter` over upstream events before the handler.
    pub fn with_filter(mut self, filter: Box<dyn EventFilter>) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Decodes the upstream body as AWS event-stream frames and rewrites each event with
    /// `edge` (into the SSE the handler reads) first.
    pub fn with_adapter(mut self, edge: Box<dyn StreamHandler>) -> Self {
        self.adapter = Some(Adapter {
            frames: super::eventstream::Decoder::new(),
            edge,
            events: Vec::new(),
        });
        self
    }

    /// The filter ended the stream (a guard rejected it): the body must end now.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// A remote check is in flight: call `poll_resume` before feeding more data.
    pub fn busy(&self) -> bool {
        self.filter.as_ref().is_some_and(|f| f.busy())
    }

    /// Drives a filter's remote check; when it completes, the events it released (and any
    /// buffered after them) are processed. Returns the client's bytes.
    pub fn poll_resume(&mut self, cx: &mut Context<'_>, info: &mut LlmInfo) -> Poll<Bytes> {
        let mut out = BytesMut::new();
        let Some(f) = self.filter.as_mut() else {
            return Poll::Ready(out.freeze());
        };
        if !f.busy() {
            return Poll::Ready(out.freeze());
        }
        let mut evs = std::mem::take(&mut self.scratch);
        let r = f.poll_check(cx, &mut evs);
        if r.is_pending() {
            self.scratch = evs;
            return Poll::Pending;
        }
        for ev in evs.drain(..) {
            self.event(&ev, &mut out, info);
        }
        self.scratch = evs;
        if let Poll::Ready(Err(stop)) = r {
            self.stopped = true;
            out.extend_from_slice(&stop);
            return Poll::Ready(out.freeze());
        }
        // Events that arrived while the check ran wait in the parser.
        if let Ok(more) = self.data(&[], info) {
            out.extend_from_slice(&more);
        }
        Poll::Ready(out.freeze())
    }

    /// Upstream ended: the last partial event and the filter's end (which may start a final
    /// remote check: then `busy`). Returns the client's bytes.
    pub fn finish_input(&mut self, info: &mut LlmInfo) -> Bytes {
        let mut out = BytesMut::new();
        if self.stopped || self.input_done {
            return out.freeze();
        }
        self.input_done = true;
        if let Some(a) = self.adapter.as_mut() {
            let mut mid = BytesMut::new();
            a.edge.on_end(&mut mid, info);
            self.parser.push(&mid);
            // The adapter writes whole events; an oversized one is left to `parser.finish`.
            let _ = self.drain(&mut out, info);
            if self.stopped {
                return out.freeze();
            }
        }
        if let Some(ev) = self.parser.finish() {
            self.filtered(ev, &mut out, info);
        }
        if let Some(f) = self.filter.as_mut() {
            let mut evs = std::mem::take(&mut self.scratch);
            let r = f.on_end(&mut evs);
            for ev in evs.drain(..) {
                self.event(&ev, &mut out, info);
            }
            self.scratch = evs;
            if let Err(stop) = r {
                self.stopped = true;
                out.extend_from_slice(&stop);
            }
        }
        out.freeze()
    }

    /// Hands the filter's outcome to the log.
    pub fn finish(&mut self, log: &mut RequestLog) {
        if let Some(f) = self.filter.as_mut() {
            f.finish(log);
        }
    }

    /// Feeds one upstream chunk; returns the bytes for the client (possibly empty).
    pub fn data(&mut self, chunk: &[u8], info: &mut LlmInfo) -> Result<Bytes, SseError> {
        if self.stopped {
            return Ok(Bytes::new());
        }
        match self.adapter.as_mut() {
            Some(a) => {
                let mid = a.push(chunk, info)?;
                self.parser.push(&mid);
            }
            None => self.parser.push(chunk),
        }
        let mut out = BytesMut::new();
        self.drain(&mut out, info)?;
        Ok(out.freeze())
    }

    /// Hands the parser's complete events on until a remote check holds the filter or the
    /// stream stops; the rest wait in the parser.
    fn drain(&mut self, out: &mut BytesMut, info: &mut LlmInfo) -> Result<(), SseError> {
        while !self.busy() {
            let Some(ev) = self.parser.next_event()? else {
                break;
            };
            self.filtered(ev, out, info);
            if self.stopped {
                break;
            }
        }
        Ok(())
    }

    /// Upstream finished; returns the closing bytes for the client.
    pub fn end(&mut self, info: &mut LlmInfo) -> Bytes {
        let out = self.end_events(info);
        if !self.capture_completion {
            info.completion = None;
        }
        out
    }

    fn end_events(&mut self, info: &mut LlmInfo) -> Bytes {
        let mut out = BytesMut::new();
        out.extend_from_slice(&self.finish_input(info));
        if self.stopped || self.busy() {
            // A check still in flight here means the caller could not wait for it: the held
            // text is not released unchecked.
            return out.freeze();
        }
        self.handler.on_end(&mut out, info);
        if !self.capture_completion {
            info.completion = None;
        }
        out.freeze()
    }

    pub fn completed(&self) -> bool {
        self.handler.completed()
    }

    /// How many events carried data that was neither JSON nor `[DONE]`.
    pub fn malformed(&self) -> u32 {
        self.malformed
    }

    /// One upstream event, through the filter when there is one.
    fn filtered(&mut self, ev: SseEvent, out: &mut BytesMut, info: &mut LlmInfo) {
        let Some(f) = self.filter.as_mut() else {
            self.event(&ev, out, info);
            return;
        };
        let mut evs = std::mem::take(&mut self.scratch);
        let r = f.on_event(ev, &mut evs);
        for ev in evs.drain(..) {
            self.event(&ev, out, info);
        }
        self.scratch = evs;
        if let Err(stop) = r {
            self.stopped = true;
            out.extend_from_slice(&stop);
        }
    }

    fn event(&mut self, ev: &SseEvent, out: &mut BytesMut, info: &mut LlmInfo) {
        // Time to first token: only scanned until it is known, not on every event.
        if info.first_token.is_some() {
            self.handler.on_event(ev, out, info);
            self.count_malformed(ev);
            return;
        }
        let has_text = |i: &LlmInfo| {
            i.completion
                .as_ref()
                .is_some_and(|c| c.iter().any(|s| !s.is_empty()))
        };
        let had_text = has_text(info);
        self.handler.on_event(ev, out, info);
        if has_text(info) && !had_text {
            info.first_token = Some(self.start.elapsed());
        }
        self.count_malformed(ev);
    }

    /// After the handler ran: it has parsed the event already (`SseEvent::json` caches).
    fn count_malformed(&mut self, ev: &SseEvent) {
        if ev.is_malformed() {
            self.malformed = self.malformed.saturating_add(1);
        }
    }
}

/// The edge of a provider whose stream is not SSE.
struct Adapter {
    frames: super::eventstream::Decoder,
    /// Provider events → SSE chunks in the format the handler reads.
    edge: Box<dyn StreamHandler>,
    events: Vec<SseEvent>,
}

impl Adapter {
    fn push(&mut self, chunk: &[u8], info: &mut LlmInfo) -> Result<BytesMut, SseError> {
        self.frames
            .push(chunk, &mut self.events)
            .map_err(SseError::Frame)?;
        let mut mid = BytesMut::new();
        for ev in self.events.drain(..) {
            self.edge.on_event(&ev, &mut mid, info);
        }
        Ok(mid)
    }
}

/// Most choices recorded per response: OpenAI's own limit on `n`. The index comes from the
/// upstream body, so without a bound one `"index": 4000000000000` would allocate terabytes.
pub const MAX_COMPLETIONS: usize = 128;

/// Appends `text` to choice `index` of the completion being assembled. Choices past
/// `MAX_COMPLETIONS` are not recorded (telemetry only; the response itself is untouched).
pub fn push_completion(info: &mut LlmInfo, index: usize, text: &str) {
    if index >= MAX_COMPLETIONS {
        return;
    }
    let c = info.completion.get_or_insert_with(Vec::new);
    if c.len() <= index {
        c.resize(index + 1, String::new());
    }
    c[index].push_str(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(bool);
    impl StreamHandler for Echo {
        fn on_event(&mut self, ev: &SseEvent, out: &mut BytesMut, info: &mut LlmInfo) {
            if ev.data == "[DONE]" {
                self.0 = true;
            } else {
                push_completion(info, 0, &ev.data);
            }
            out.extend_from_slice(&ev.raw);
        }
        fn completed(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn forwards_raw_and_sets_first_token() {
        let mut t = SseTransform::new(Box::new(Echo(false)), Instant::now(), true);
        let mut info = LlmInfo::default();
        let out = t.data(b"data: he", &mut info).expect("data");
        assert!(out.is_empty());
        let out = t.data(b"llo\n\ndata: [DONE]\n\n", &mut info).expect("data");
        assert_eq!(&out[..], b"data: hello\n\ndata: [DONE]\n\n");
        assert!(info.first_token.is_some());
        assert!(t.completed());
        t.end(&mut info);
        assert_eq!(info.completion.as_deref(), Some(&["hello".to_owned()][..]));
    }

    #[test]
    fn counts_malformed_events() {
        let mut t = SseTransform::new(Box::new(Echo(false)), Instant::now(), true);
        let mut info = LlmInfo::default();
        t.data(
            b"data: {\"a\":1}\n\ndata: {\"unterminated\n\ndata: [DONE]\n\n",
            &mut info,
        )
        .expect("data");
        assert_eq!(t.malformed(), 1);
    }

    #[test]
    fn completion_index_is_bounded() {
        let mut info = LlmInfo::default();
        push_completion(&mut info, MAX_COMPLETIONS - 1, "last");
        push_completion(&mut info, 4_000_000_000_000, "ignored");
        let c = info.completion.expect("completion");
        assert_eq!(c.len(), MAX_COMPLETIONS);
        assert_eq!(c[MAX_COMPLETIONS - 1], "last");
    }

    #[test]
    fn completion_dropped_unless_captured() {
        let mut t = SseTransform::new(Box::new(Echo(false)), Instant::now(), false);
        let mut info = LlmInfo::default();
        t.data(b"data: x\n\n", &mut info).expect("data");
        t.end(&mut info);
        assert!(info.completion.is_none());
        assert!(info.first_token.is_some());
    }
}
