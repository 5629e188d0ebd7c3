//! Streamed response bodies: event framing (SSE, SSE with CRLF, JSON array), the channel body
//! that carries them, and the driver task that paces events and applies body faults.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use super::Dialect;
use super::fault::{BodyFault, Faults};

/// A stalled stream gives up after this long even if the client stays connected, so a
/// forgotten test cannot pin a task forever.
const STALL_LIMIT: Duration = Duration::from_secs(300);

/// Error a reset stream ends with; hyper aborts the connection when a body fails.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("simulated connection reset")]
    Reset,
}

/// How events are framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `event: x\ndata: {...}\n\n` (OpenAI, Anthropic).
    Sse,
    /// `data: {...}\r\n\r\n` (Google's servers terminate SSE lines with CRLF).
    SseCrlf,
    /// A JSON array streamed element by element (Gemini without `alt=sse`).
    JsonArray,
    /// AWS event-stream binary frames (Bedrock's ConverseStream); the event name goes in the
    /// `:event-type` header.
    AwsEventStream,
}

/// A finished list of events, ready to be paced out.
#[derive(Clone, Debug)]
pub struct EventStream {
    pub dialect: Dialect,
    pub framing: Framing,
    pub content_type: &'static str,
    pub events: Vec<Bytes>,
}

impl EventStream {
    pub fn new(dialect: Dialect, framing: Framing) -> Self {
        let content_type = match framing {
            Framing::JsonArray => "application/json; charset=UTF-8",
            Framing::AwsEventStream => "application/vnd.amazon.eventstream",
            Framing::Sse | Framing::SseCrlf => "text/event-stream; charset=utf-8",
        };
        EventStream {
            dialect,
            framing,
            content_type,
            events: Vec::new(),
        }
    }

    /// Appends a JSON event, with an SSE `event:` name when given.
    pub fn push(&mut self, event: Option<&str>, data: &Json) {
        let bytes = self.frame(event, &data.to_string());
        self.events.push(bytes);
    }

    /// Appends a raw `data:` payload (OpenAI's `[DONE]`).
    pub fn push_raw(&mut self, data: &str) {
        let bytes = self.frame(None, data);
        self.events.push(bytes);
    }

    /// Closes a JSON array stream.
    pub fn finish(&mut self) {
        if self.framing == Framing::JsonArray {
            self.events.push(Bytes::from_static(b"]"));
        }
    }

    fn frame(&self, event: Option<&str>, data: &str) -> Bytes {
        match self.framing {
            Framing::Sse => match event {
                Some(name) => format!("event: {name}\ndata: {data}\n\n").into(),
                None => format!("data: {data}\n\n").into(),
            },
            Framing::SseCrlf => format!("data: {data}\r\n\r\n").into(),
            Framing::JsonArray if self.events.is_empty() => format!("[{data}").into(),
            Framing::JsonArray => format!(",\r\n{data}").into(),
            Framing::AwsEventStream => aws_frame("event", event.unwrap_or("chunk"), data),
        }
    }

    /// An event whose JSON is cut off, in this stream's framing.
    pub fn malformed_event(&self) -> Bytes {
        let broken = r#"{"choices": [{"delta": {"content": "unterminated"#;
        match (self.dialect, self.framing) {
            (Dialect::Anthropic, Framing::Sse) => {
                format!("event: content_block_delta\ndata: {broken}\n\n").into()
            }
            (_, Framing::Sse) => format!("data: {broken}\n\n").into(),
            (_, Framing::SseCrlf) => format!("data: {broken}\r\n\r\n").into(),
            (_, Framing::JsonArray) => format!(",\r\n{broken}").into(),
            (_, Framing::AwsEventStream) => aws_frame("event", "contentBlockDelta", broken),
        }
    }

    /// The provider's in-stream error event.
    pub fn error_event(&self) -> Bytes {
        if self.framing == Framing::AwsEventStream {
            let data = json!({"message": "The model is overloaded (simulated)."});
            return aws_frame("exception", "modelStreamErrorException", &data.to_string());
        }
        let (event, data) = match self.dialect {
            Dialect::Anthropic => (
                Some("error"),
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded (simulated)."}}),
            ),
            Dialect::OpenAi => (
                None,
                json!({"error": {"message": "The server had an error while processing your request (simulated).", "type": "server_error", "param": null, "code": null}}),
            ),
            Dialect::Google => (
                None,
                json!({"error": {"code": 503, "message": "The model is overloaded (simulated).", "status": "UNAVAILABLE"}}),
            ),
            Dialect::Aws => (
                None,
                json!({"message": "The model is overloaded (simulated)."}),
            ),
        };
        self.frame(event, &data.to_string())
    }

    /// The whole stream as one buffer: what a client sees without faults.
    pub fn concat(&self) -> Vec<u8> {
        self.events.iter().flat_map(|b| b.iter().copied()).collect()
    }
}

/// One AWS event-stream message: `:message-type` `event` (named by `:event-type`) or
/// `exception` (named by `:exception-type`), JSON payload.
fn aws_frame(message_type: &str, name: &str, payload: &str) -> Bytes {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let name_header = if message_type == "exception" {
        ":exception-type"
    } else {
        ":event-type"
    };
    let m = Message::new(Bytes::from(payload.to_owned()))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String(message_type.to_owned().into()),
        ))
        .add_header(Header::new(
            name_header,
            HeaderValue::String(name.to_owned().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    let mut out = Vec::new();
    // Writing to a Vec cannot fail short of the 16 MiB frame limit, far above any event here.
    let _ = aws_smithy_eventstream::frame::write_message_to(&m, &mut out);
    Bytes::from(out)
}

/// Response body fed by a channel, so events can be paced and faults timed.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, StreamError>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|res| res.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// What the driver does after the events it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Clean,
    Stall,
    Reset,
}

/// Starts a task that sends `events` with the pacing and body fault in `faults`, and returns
/// the body it feeds. The task ends when the client goes away.
pub fn drive(
    events: Vec<Bytes>,
    error_event: Bytes,
    malformed: Bytes,
    faults: &Faults,
) -> ChannelBody {
    let (tx, rx) = mpsc::channel(4);
    let half = (events.len() / 2).max(1).min(events.len());
    let (plan, ending): (Vec<Bytes>, Ending) = match faults.body {
        None => (events, Ending::Clean),
        Some(BodyFault::Truncate) => (events[..half].to_vec(), Ending::Clean),
        Some(BodyFault::Stall) => (events[..half].to_vec(), Ending::Stall),
        Some(BodyFault::Reset) => (events[..half].to_vec(), Ending::Reset),
        Some(BodyFault::MidstreamError) => {
            let mut v = events[..half].to_vec();
            v.push(error_event);
            (v, Ending::Clean)
        }
        Some(BodyFault::Malformed) => {
            let mut v = events;
            match v.get_mut(half) {
                Some(slot) => *slot = malformed,
                None => v.push(malformed),
            }
            (v, Ending::Clean)
        }
    };
    let chunk_delay = faults.chunk_delay;
    tokio::spawn(async move {
        for (i, event) in plan.into_iter().enumerate() {
            if let (Some(d), true) = (chunk_delay, i > 0) {
                tokio::time::sleep(d).await;
            }
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        match ending {
            Ending::Clean => {}
            Ending::Stall => {
                let _ = tokio::time::timeout(STALL_LIMIT, tx.closed()).await;
            }
            Ending::Reset => {
                let _ = tx.send(Err(StreamError::Reset)).await;
            }
        }
    });
    ChannelBody { rx }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn three() -> EventStream {
        let mut s = EventStream::new(Dialect::OpenAi, Framing::Sse);
        s.push(None, &json!({"n": 1}));
        s.push(Some("x"), &json!({"n": 2}));
        s.push_raw("[DONE]");
        s
    }

    #[test]
    fn framings() {
        assert_eq!(
            String::from_utf8(three().concat()).expect("utf8"),
            "data: {\"n\":1}\n\nevent: x\ndata: {\"n\":2}\n\ndata: [DONE]\n\n"
        );
        let mut g = EventStream::new(Dialect::Google, Framing::JsonArray);
        g.push(None, &json!(1));
        g.push(None, &json!(2));
        g.finish();
        assert_eq!(g.concat(), b"[1,\r\n2]");
        let mut c = EventStream::new(Dialect::Google, Framing::SseCrlf);
        c.push(None, &json!(1));
        assert_eq!(c.concat(), b"data: 1\r\n\r\n");
    }

    async fn run(body_fault: Option<BodyFault>) -> (Vec<u8>, bool) {
        let s = three();
        let faults = Faults {
            body: body_fault,
            ..Faults::default()
        };
        let body = drive(
            s.events.clone(),
            s.error_event(),
            s.malformed_event(),
            &faults,
        );
        match tokio::time::timeout(Duration::from_millis(300), body.collect()).await {
            Ok(Ok(collected)) => (collected.to_bytes().to_vec(), false),
            Ok(Err(_)) => (Vec::new(), true),
            Err(_) => (Vec::new(), true),
        }
    }

    #[tokio::test]
    async fn faults_shape_the_body() {
        let (all, failed) = run(None).await;
        assert!(!failed);
        assert_eq!(all, three().concat());

        let (cut, failed) = run(Some(BodyFault::Truncate)).await;
        assert!(!failed);
        assert_eq!(cut, b"data: {\"n\":1}\n\n");

        let (bad, _) = run(Some(BodyFault::Malformed)).await;
        let bad = String::from_utf8(bad).expect("utf8");
        assert!(bad.contains("unterminated"), "{bad}");
        assert!(bad.ends_with("data: [DONE]\n\n"), "{bad}");

        let (err, _) = run(Some(BodyFault::MidstreamError)).await;
        assert!(
            String::from_utf8(err)
                .expect("utf8")
                .contains("server_error")
        );

        // Stall never finishes, reset fails the body: both end in the "failed" arm.
        assert!(run(Some(BodyFault::Stall)).await.1);
        assert!(run(Some(BodyFault::Reset)).await.1);
    }
}
