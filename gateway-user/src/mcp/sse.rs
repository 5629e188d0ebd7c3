//! Server-sent events: an incremental parser for target streams and the encoder for client
//! streams. Only what MCP uses: `event`, `data` (multi-line), `id`; comments are skipped.

use bytes::Bytes;

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `event:` field; `None` means the default type, `message`.
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

/// Parser errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("SSE event larger than {limit} bytes")]
    TooLarge { limit: usize },
}

/// Incremental parser; feed it body chunks in order.
#[derive(Debug)]
pub struct Parser {
    line: Vec<u8>,
    pending: Event,
    has_data: bool,
    size: usize,
    limit: usize,
}

impl Parser {
    /// `limit` bounds one event (all its lines), so a target cannot make the gateway buffer
    /// without end.
    pub fn new(limit: usize) -> Self {
        Parser {
            line: Vec::new(),
            pending: Event::default(),
            has_data: false,
            size: 0,
            limit,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, SseError> {
        let mut out = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if let Some(ev) = self.line_done(&line) {
                    out.push(ev);
                }
            } else {
                self.line.push(b);
                self.size += 1;
                if self.size > self.limit {
                    return Err(SseError::TooLarge { limit: self.limit });
                }
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<Event> {
        if line.is_empty() {
            self.size = 0;
            let ev = std::mem::take(&mut self.pending);
            let dispatch = std::mem::take(&mut self.has_data);
            return dispatch.then_some(ev);
        }
        if line[0] == b':' {
            return None;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.pending.event = Some(value.to_string()),
            "data" => {
                if self.has_data {
                    self.pending.data.push('\n');
                }
                self.pending.data.push_str(value);
                self.has_data = true;
            }
            "id" => self.pending.id = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

/// Encodes one event. `data` lines are split so embedded newlines stay valid SSE.
pub fn encode(event: &str, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + event.len() + 16);
    s.push_str("event: ");
    s.push_str(event);
    s.push('\n');
    for line in data.split('\n') {
        s.push_str("data: ");
        s.push_str(line);
        s.push('\n');
    }
    s.push('\n');
    Bytes::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_across_chunk_boundaries() {
        let mut p = Parser::new(1024);
        let stream = b"event: endpoint\r\ndata: /message?sessionId=1\r\n\r\n: ping\n\ndata: {\"a\":\ndata: 1}\nid: 9\n\n";
        let mut events = Vec::new();
        for chunk in stream.chunks(5) {
            events.extend(p.push(chunk).expect("within limit"));
        }
        assert_eq!(
            events,
            vec![
                Event {
                    event: Some("endpoint".into()),
                    data: "/message?sessionId=1".into(),
                    id: None
                },
                Event {
                    event: None,
                    data: "{\"a\":\n1}".into(),
                    id: Some("9".into())
                },
            ]
        );
    }

    #[test]
    fn bounds_event_size() {
        let mut p = Parser::new(8);
        assert_eq!(
            p.push(b"data: 0123456789"),
            Err(SseError::TooLarge { limit: 8 })
        );
    }

    /// Random chunking of random bytes never panics and never exceeds the limit.
    #[test]
    fn arbitrary_chunks_never_panic() {
        let alphabet = b"data: event:id:\r\n:x{}";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2_000 {
            let mut p = Parser::new(64);
            for _ in 0..16 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let chunk: Vec<u8> = (0..(x % 24) as usize)
                    .map(|i| alphabet[((x >> (i % 48)) as usize + i) % alphabet.len()])
                    .collect();
                match p.push(&chunk) {
                    Ok(events) => assert!(events.iter().all(|e| e.data.len() <= 64)),
                    Err(SseError::TooLarge { limit }) => assert_eq!(limit, 64),
                }
            }
        }
    }

    #[test]
    fn encode_round_trips() {
        let bytes = encode("message", "line1\nline2");
        let mut p = Parser::new(1024);
        let evs = p.push(&bytes).expect("parses");
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].event.as_deref(), Some("message"));
        assert_eq!(evs[0].data, "line1\nline2");
    }
}
