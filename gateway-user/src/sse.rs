//! Server-Sent Events, one implementation for every stream the gateway reads or writes: LLM
//! provider streams (forwarded byte for byte, so each event keeps its raw bytes), MCP target
//! streams, and the SSE the gateway itself sends to MCP clients.
//!
//! The parser is incremental (bytes in, complete events out), bounded (`max_event`), and takes
//! `\n`, `\r\n` and lone `\r` line endings.

use bytes::{Buf, Bytes, BytesMut};

/// One SSE event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
    /// The exact bytes of the event block, terminator included.
    pub raw: Bytes,
    /// `data` parsed as JSON, on first use (`json()`), so that each event is parsed once
    /// however many observers read it.
    pub parsed: std::cell::OnceCell<Option<serde_json::Value>>,
}

impl SseEvent {
    /// The event's data as JSON, or `None` when it is not JSON (`[DONE]`, empty, malformed).
    /// Parsed at most once per event.
    pub fn json(&self) -> Option<&serde_json::Value> {
        self.parsed
            .get_or_init(|| {
                if self.data.is_empty() || self.data == "[DONE]" {
                    return None;
                }
                serde_json::from_str(&self.data).ok()
            })
            .as_ref()
    }

    /// Whether the data is neither empty, `[DONE]`, nor JSON.
    pub fn is_malformed(&self) -> bool {
        !self.data.is_empty() && self.data != "[DONE]" && self.json().is_none()
    }

    /// Serialises an event the way providers do: an optional `event:` line, then one `data:`
    /// line per line of `data` (so embedded newlines stay valid SSE).
    pub fn encode(event: Option<&str>, data: &str, out: &mut BytesMut) {
        if let Some(e) = event {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(e.as_bytes());
            out.extend_from_slice(b"\n");
        }
        for line in data.split('\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\n");
        }
        out.extend_from_slice(b"\n");
    }

    /// One encoded event of type `event`, as a frame of its own.
    pub fn frame(event: &str, data: &str) -> Bytes {
        let mut out = BytesMut::with_capacity(data.len() + event.len() + 16);
        SseEvent::encode(Some(event), data, &mut out);
        out.freeze()
    }
}

/// Buffers partial input across chunks. Bounded: an event larger than `max_event` is an error.
#[derive(Debug)]
pub struct SseParser {
    buf: BytesMut,
    max_event: usize,
}

/// The stream broke the SSE framing rules.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("SSE event larger than {0} bytes")]
    TooLarge(usize),
    /// A provider's non-SSE framing (AWS event-stream) was broken.
    #[error("{0}")]
    Frame(String),
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new(8 << 20)
    }
}

impl SseParser {
    pub fn new(max_event: usize) -> Self {
        SseParser {
            buf: BytesMut::new(),
            max_event,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes received but not yet part of a complete event.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        let Some((end, term)) = find_boundary(&self.buf) else {
            if self.buf.len() > self.max_event {
                return Err(SseError::TooLarge(self.max_event));
            }
            return Ok(None);
        };
        let raw = self.buf.split_to(end + term).freeze();
        // Blocks with no data and no event (comments, keep-alives) are still forwarded raw by
        // callers that pass through; they see them as events with empty data.
        Ok(Some(parse_block(&raw[..end], raw.clone())))
    }

    /// Feeds `chunk` and returns every event it completed.
    pub fn events(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.push(chunk);
        let mut out = Vec::new();
        while let Some(ev) = self.next_event()? {
            out.push(ev);
        }
        Ok(out)
    }

    /// Whatever is left at end of stream, as a final event if it has content.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
            self.buf.advance(self.buf.len());
            return None;
        }
        let raw = self.buf.split().freeze();
        Some(parse_block(&raw, raw.clone()))
    }
}

/// Position of the first blank line (`\n\n`, `\r\n\r\n`, `\r\r`) and its length.
fn find_boundary(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        match buf[i] {
            b'\n' => {
                if buf.get(i + 1) == Some(&b'\n') {
                    return Some((i, 2));
                }
                if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                    return Some((i, 3));
                }
            }
            b'\r' => {
                if buf.get(i + 1) == Some(&b'\n')
                    && buf.get(i + 2) == Some(&b'\r')
                    && buf.get(i + 3) == Some(&b'\n')
                {
                    return Some((i, 4));
                }
                if buf.get(i + 1) == Some(&b'\r') {
                    return Some((i, 2));
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_block(block: &[u8], raw: Bytes) -> SseEvent {
    let text = String::from_utf8_lossy(block);
    let mut event = None;
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    SseEvent {
        event,
        data: data.unwrap_or_default(),
        raw,
        parsed: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut SseParser) -> Vec<SseEvent> {
        let mut v = Vec::new();
        while let Some(e) = p.next_event().expect("event") {
            v.push(e);
        }
        v
    }

    #[test]
    fn split_across_chunks() {
        let mut p = SseParser::default();
        p.push(b"event: message_start\nda");
        assert!(all(&mut p).is_empty());
        p.push(b"ta: {\"a\":1}\n\ndata: [DONE]\n\n");
        let evs = all(&mut p);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].event.as_deref(), Some("message_start"));
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(
            &evs[0].raw[..],
            b"event: message_start\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(evs[1].data, "[DONE]");
    }

    #[test]
    fn crlf_and_multiline_and_comments() {
        let mut p = SseParser::default();
        p.push(b": ping\r\n\r\ndata: a\r\ndata: b\r\n\r\n");
        let evs = all(&mut p);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].data, "");
        assert_eq!(evs[1].data, "a\nb");
    }

    #[test]
    fn finish_returns_unterminated_tail() {
        let mut p = SseParser::default();
        p.push(b"data: tail");
        assert!(all(&mut p).is_empty());
        assert_eq!(p.finish().expect("tail").data, "tail");
        assert!(p.finish().is_none());
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut p = SseParser::new(8);
        p.push(b"data: 0123456789");
        assert_eq!(p.next_event(), Err(SseError::TooLarge(8)));
    }

    /// An MCP target's stream: CRLF lines, a comment block, multi-line data, fed in 5-byte
    /// chunks. The comment block comes out with empty data (MCP callers skip those).
    #[test]
    fn mcp_target_stream_across_chunks() {
        let mut p = SseParser::new(1024);
        let stream = b"event: endpoint\r\ndata: /message?sessionId=1\r\n\r\n: ping\n\ndata: {\"a\":\ndata: 1}\nid: 9\n\n";
        let mut events = Vec::new();
        for chunk in stream.chunks(5) {
            events.extend(p.events(chunk).expect("within limit"));
        }
        let seen: Vec<_> = events
            .iter()
            .map(|e| (e.event.as_deref(), e.data.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (Some("endpoint"), "/message?sessionId=1"),
                (None, ""),
                (None, "{\"a\":\n1}"),
            ]
        );
    }

    /// Random chunking of random bytes never panics, and what is buffered stays bounded.
    #[test]
    fn arbitrary_chunks_stay_bounded() {
        let alphabet = b"data: event:id:\r\n:x{}";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2_000 {
            let mut p = SseParser::new(64);
            for _ in 0..16 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let chunk: Vec<u8> = (0..(x % 24) as usize)
                    .map(|i| alphabet[((x >> (i % 48)) as usize + i) % alphabet.len()])
                    .collect();
                match p.events(&chunk) {
                    Ok(events) => assert!(events.iter().all(|e| e.data.len() <= 64 + 24)),
                    Err(SseError::TooLarge(limit)) => {
                        assert_eq!(limit, 64);
                        break;
                    }
                    Err(e @ SseError::Frame(_)) => panic!("the SSE parser reports no frames: {e}"),
                }
                assert!(p.pending().len() <= 64 + 24);
            }
        }
    }

    #[test]
    fn frame_round_trips() {
        let bytes = SseEvent::frame("message", "line1\nline2");
        let evs = SseParser::new(1024).events(&bytes).expect("parses");
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].event.as_deref(), Some("message"));
        assert_eq!(evs[0].data, "line1\nline2");
        assert_eq!(&evs[0].raw[..], &bytes[..]);
    }
}
