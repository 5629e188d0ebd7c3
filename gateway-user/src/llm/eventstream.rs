//! AWS event-stream framing (`application/vnd.amazon.eventstream`, Bedrock's ConverseStream)
//! decoded incrementally by `aws-smithy-eventstream` (prelude and message CRCs checked there),
//! each message turned into an `SseEvent` so the stream handlers that read SSE read it too:
//!
//! ```text
//! :message-type event      :event-type contentBlockDelta   → event: contentBlockDelta, data: payload
//! :message-type exception  :exception-type throttlingException → event: exception,
//!                                                            data: {"type": ..., "message": ...}
//! :message-type error      :error-code / :error-message       → event: exception (same shape)
//! ```

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::BytesMut;
use serde_json::{Value, json};

use crate::sse::SseEvent;

/// Largest frame accepted (AWS caps event-stream messages at 16 MiB).
pub const MAX_FRAME: usize = 16 << 20;
/// Prelude (total length, headers length, prelude CRC) and message CRC.
const MIN_FRAME: usize = 16;

/// Feeds body chunks in, takes events out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    frames: MessageFrameDecoder,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `chunk` and decodes every complete message into `out`. An invalid frame (bad
    /// CRC, impossible length) is an error: the stream cannot be resynchronised after it.
    ///
    /// A frame is handed to the decoder only once all of it is here (its total length is the
    /// prelude's first field), so what is not yet decoded stays in `buf`, counted by `pending`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        self.buf.extend_from_slice(chunk);
        while self.buf.len() >= 4 {
            let total = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            let total = total as usize;
            if !(MIN_FRAME..=MAX_FRAME).contains(&total) {
                return Err(format!("invalid event-stream frame length {total}"));
            }
            if self.buf.len() < total {
                break;
            }
            let frame = self.buf.split_to(total).freeze();
            match self.frames.decode_frame(frame) {
                Ok(DecodedFrame::Complete(m)) => out.push(to_event(&m)),
                Ok(DecodedFrame::Incomplete) => {
                    return Err("event-stream frame shorter than its length".into());
                }
                Err(e) => return Err(format!("invalid event-stream frame: {e}")),
            }
        }
        Ok(())
    }

    /// Bytes held for a message not yet complete (a stream ending here was cut short).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

fn header<'m>(m: &'m Message, name: &str) -> Option<&'m str> {
    m.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

fn to_event(m: &Message) -> SseEvent {
    let payload = String::from_utf8_lossy(m.payload()).into_owned();
    let (event, data) = match header(m, ":message-type") {
        Some("exception") => {
            let kind = header(m, ":exception-type").unwrap_or("exception");
            let message = serde_json::from_str::<Value>(&payload)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or(payload);
            (
                "exception".to_owned(),
                json!({"type": kind, "message": message}).to_string(),
            )
        }
        Some("error") => {
            let kind = header(m, ":error-code").unwrap_or("error");
            let message = header(m, ":error-message").unwrap_or_default();
            (
                "exception".to_owned(),
                json!({"type": kind, "message": message}).to_string(),
            )
        }
        _ => (
            header(m, ":event-type").unwrap_or("message").to_owned(),
            payload,
        ),
    };
    let raw = SseEvent::frame(&event, &data);
    SseEvent {
        event: Some(event),
        data,
        raw,
        parsed: Default::default(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::Header;

    use super::*;

    /// One event-stream frame as Bedrock sends it.
    pub(crate) fn frame(kind: &str, name: &str, payload: &str) -> Vec<u8> {
        let type_header = match kind {
            "exception" => ":exception-type",
            _ => ":event-type",
        };
        let m = Message::new(bytes::Bytes::from(payload.to_owned()))
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String(kind.to_owned().into()),
            ))
            .add_header(Header::new(
                type_header,
                HeaderValue::String(name.to_owned().into()),
            ))
            .add_header(Header::new(
                ":content-type",
                HeaderValue::String("application/json".to_owned().into()),
            ));
        let mut out = Vec::new();
        write_message_to(&m, &mut out).expect("encodable");
        out
    }

    #[test]
    fn frames_split_anywhere_decode_in_order() {
        let mut all = frame("event", "messageStart", r#"{"role":"assistant"}"#);
        all.extend(frame(
            "event",
            "contentBlockDelta",
            r#"{"delta":{"text":"Hi"},"contentBlockIndex":0}"#,
        ));
        all.extend(frame(
            "exception",
            "throttlingException",
            r#"{"message":"slow down"}"#,
        ));
        for step in [1, 3, 7, all.len()] {
            let mut d = Decoder::new();
            let mut out = Vec::new();
            for chunk in all.chunks(step) {
                d.push(chunk, &mut out).expect("valid frames");
            }
            assert_eq!(d.pending(), 0);
            let got: Vec<(Option<&str>, &str)> = out
                .iter()
                .map(|e| (e.event.as_deref(), e.data.as_str()))
                .collect();
            assert_eq!(
                got,
                [
                    (Some("messageStart"), r#"{"role":"assistant"}"#),
                    (
                        Some("contentBlockDelta"),
                        r#"{"delta":{"text":"Hi"},"contentBlockIndex":0}"#
                    ),
                    (
                        Some("exception"),
                        r#"{"type":"throttlingException","message":"slow down"}"#
                    ),
                ],
                "chunks of {step} bytes"
            );
        }
    }

    #[test]
    fn a_corrupt_frame_is_an_error_not_a_panic() {
        let mut f = frame("event", "messageStop", r#"{"stopReason":"end_turn"}"#);
        let last = f.len() - 1;
        f[last] ^= 0xff; // message CRC
        let mut out = Vec::new();
        assert!(Decoder::new().push(&f, &mut out).is_err());
        for cut in [3, 12, 20] {
            let mut short = frame("event", "messageStop", "{}");
            short.truncate(cut);
            let mut d = Decoder::new();
            d.push(&short, &mut out).expect("incomplete, not invalid");
            assert!(out.is_empty() && d.pending() == cut, "cut at {cut}");
        }
        let mut absurd = frame("event", "messageStop", "{}");
        absurd[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Decoder::new().push(&absurd, &mut out).is_err());
    }
}
