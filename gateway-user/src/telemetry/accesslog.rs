//! The access log: one line per finished request, in agentgateway's text format
//! (`<RFC3339>\tinfo\trequest\tkey=value ...`) or as flat JSON, written to stdout by a
//! dedicated thread so a slow terminal or pipe never blocks a request.

use std::io::Write;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use super::fields::{AttrValue, Attrs};
use crate::time::format_timestamp;

/// Lines that may wait for the writer before new ones are dropped (and counted).
const QUEUE: usize = 8192;

/// Output format (`config.logging.format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Quotes a text-format value the way agentgateway does: bare unless it is empty or contains
/// whitespace, `"` or `=`, then as a JSON string (which also escapes control characters).
fn push_text_value(line: &mut String, v: &AttrValue) {
    use std::fmt::Write as _;
    let s = match v {
        AttrValue::Str(s) => s.as_ref(),
        // Numbers and booleans never need quoting; written without a temporary string.
        AttrValue::Int(i) => {
            let _ = write!(line, "{i}");
            return;
        }
        AttrValue::Bool(b) => {
            line.push_str(if *b { "true" } else { "false" });
            return;
        }
        other => {
            let text = other.to_string();
            return push_text_str(line, &text, false);
        }
    };
    push_text_str(line, s, true);
}

fn push_text_str(line: &mut String, s: &str, empty_bare: bool) {
    let needs_quote = s.is_empty()
        || s.bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'"' || b == b'=' || b.is_ascii_control());
    if needs_quote && !(empty_bare && s.is_empty()) {
        // Serialising a &str into a String cannot fail.
        line.push_str(&serde_json::to_string(s).unwrap_or_default());
    } else {
        line.push_str(s);
    }
}

/// One text line (without the trailing newline).
pub fn format_text(ts: Duration, attrs: &Attrs<'_>) -> String {
    format_text_iter(ts, attrs.iter().map(|(k, v)| (k.as_ref(), v)))
}

/// One text line from attributes in order.
pub fn format_text_iter<'a, 'v: 'a>(
    ts: Duration,
    attrs: impl Iterator<Item = (&'a str, &'a AttrValue<'v>)>,
) -> String {
    let mut line = String::with_capacity(512);
    line.push_str(&format_timestamp(ts));
    line.push_str("\tinfo\trequest\t");
    for (i, (k, v)) in attrs.enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(k);
        line.push('=');
        push_text_value(&mut line, v);
    }
    line
}

/// One JSON line: `{"timestamp":..,"level":"info","scope":"request", <flat dotted keys>}`.
pub fn format_json(ts: Duration, attrs: &Attrs<'_>) -> String {
    let mut m = serde_json::Map::with_capacity(attrs.len() + 3);
    m.insert("timestamp".into(), format_timestamp(ts).into());
    m.insert("level".into(), "info".into());
    m.insert("scope".into(), "request".into());
    for (k, v) in attrs {
        m.insert(k.to_string(), v.to_json());
    }
    serde_json::Value::Object(m).to_string()
}

/// What the writer thread receives.
pub enum Line {
    Text(String),
    /// Acknowledged once every earlier line has been written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Where finished lines go.
pub enum Sink {
    /// A background thread writing to stdout.
    Stdout(SyncSender<Line>),
    /// Tests: lines are delivered to a channel.
    #[cfg(test)]
    Capture(std::sync::mpsc::Sender<String>),
}

// === impl Sink ===

impl Sink {
    /// Starts the stdout writer thread.
    pub fn stdout() -> std::io::Result<Sink> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                super::lower_thread_priority();
                write_loop(rx)
            })?;
        Ok(Sink::Stdout(tx))
    }

    /// Never blocks. Returns false when the line was dropped (queue full or writer gone).
    pub fn send(&self, line: String) -> bool {
        match self {
            Sink::Stdout(tx) => match tx.try_send(Line::Text(line)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            },
            #[cfg(test)]
            Sink::Capture(tx) => tx.send(line).is_ok(),
        }
    }

    /// Waits until queued lines are written, at most `deadline`. For shutdown.
    // Irrefutable outside tests, where `Capture` does not exist.
    #[allow(irrefutable_let_patterns)]
    pub async fn flush(&self, deadline: Duration) {
        if let Sink::Stdout(tx) = self {
            super::flush_channel(tx, Line::Flush, deadline).await;
        }
    }
}

fn write_loop(rx: Receiver<Line>) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut acks = Vec::new();
    while let Ok(first) = rx.recv() {
        buf.clear();
        let mut next = Some(first);
        // Batch whatever else is queued so a burst costs one write.
        while let Some(line) = next.take() {
            match line {
                Line::Text(t) => {
                    buf.extend_from_slice(t.as_bytes());
                    buf.push(b'\n');
                }
                Line::Flush(ack) => acks.push(ack),
            }
            if buf.len() < 60 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            let mut out = std::io::stdout().lock();
            // A closed stdout is not worth crashing for; lines are simply lost.
            let _ = out.write_all(&buf).and_then(|()| out.flush());
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_line_quotes_values_with_spaces() {
        let attrs: Attrs = vec![
            ("http.status".into(), AttrValue::Int(200)),
            ("error".into(), AttrValue::from("upstream reset: \"x\"")),
            ("llm.request.model".into(), AttrValue::from("")),
        ];
        assert_eq!(
            format_text(Duration::ZERO, &attrs),
            "1970-01-01T00:00:00.000000Z\tinfo\trequest\thttp.status=200 error=\"upstream reset: \\\"x\\\"\" llm.request.model="
        );
    }

    #[test]
    fn json_line_is_flat_and_typed() {
        let attrs: Attrs = vec![
            ("http.status".into(), AttrValue::Int(200)),
            ("llm.provider".into(), AttrValue::from("openai")),
        ];
        let v: serde_json::Value =
            serde_json::from_str(&format_json(Duration::ZERO, &attrs)).expect("json");
        assert_eq!(v["http.status"], 200);
        assert_eq!(v["llm.provider"], "openai");
        assert_eq!(v["level"], "info");
    }
}
