//! The simulated model: turns a provider-neutral [`Conversation`] into a [`Completion`]
//! (reply text or tool call, finish reason, token usage). Each provider module parses its own
//! request shape into a `Conversation` and renders the `Completion` in its own shape, so all
//! providers answer the same prompt with the same words and the same token counts.
//!
//! Rules (stable; black-box tests rely on them):
//! - reply: [`text::reply_text`] of the last user message, or [`text::tool_result_reply`] when
//!   the last message carries a tool result; the `x-sim-reply` header replaces it verbatim.
//! - tool call: when tools are offered, the last message is from the user and either the
//!   user mentions "weather" or `tool_choice` forces a tool. The tool is the forced one, else
//!   the first whose name contains "weather", else the first.
//! - input tokens: words of every prompt text + 3 per message (a separate system prompt
//!   counts as a message) + 10 per tool.
//! - output tokens: reply pieces (words) + tool-call argument pieces + 5 per tool call +
//!   reasoning tokens (8 for reasoning models `o1*`/`o3*`/`o4*`/`*reason*`, or the
//!   `x-sim-reasoning-tokens` header).
//! - cached input tokens: the `x-sim-cached-tokens` header, capped at the input tokens.
//! - `max_tokens` cuts the reply to that many pieces and the finish reason becomes "length".
//! - streams send one word per event, or `x-sim-chunk-chars` characters per event (to cut a
//!   secret across events: `"123-4"`, `"5-6789"`); token counts stay word-based.

use http::HeaderMap;
use serde_json::Value as Json;

use super::text;

/// Argument pieces are this many characters long when a tool call is streamed.
pub const ARGUMENT_PIECE_CHARS: usize = 8;
/// Text Anthropic-style models put before a tool call.
pub const TOOL_PREAMBLE: &str = "Let me look that up.";

/// A tool the caller offered.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolDef {
    pub name: String,
    /// JSON schema of the arguments.
    pub parameters: Json,
}

/// How the caller constrained tool use.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ToolChoice {
    #[default]
    Auto,
    None,
    /// Any tool must be called (`required` / `any`).
    Required,
    Named(String),
}

/// Provider-neutral view of a generation request.
#[derive(Clone, Debug, Default)]
pub struct Conversation {
    pub model: String,
    /// System prompt and every message text, for token counting.
    pub prompt_texts: Vec<String>,
    pub messages: u64,
    pub last_user: String,
    /// Set when the last message returns a tool result to the model.
    pub tool_result: Option<String>,
    pub tools: Vec<ToolDef>,
    pub tool_choice: ToolChoice,
    pub max_tokens: Option<u64>,
}

/// Test knobs read from request headers.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub reply: Option<String>,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub chunk_chars: Option<usize>,
}

impl Overrides {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let number = |name: &str| text(name).and_then(|v| v.trim().parse::<u64>().ok());
        Overrides {
            reply: text("x-sim-reply"),
            cached_tokens: number("x-sim-cached-tokens"),
            reasoning_tokens: number("x-sim-reasoning-tokens"),
            chunk_chars: number("x-sim-chunk-chars").map(|n| n.max(1) as usize),
        }
    }
}

/// A tool call the model makes.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Json,
}

impl ToolCall {
    /// Arguments as the compact JSON string OpenAI puts in `function.arguments`.
    pub fn arguments_string(&self) -> String {
        self.arguments.to_string()
    }

    /// The argument string cut into streaming pieces.
    pub fn argument_pieces(&self) -> Vec<String> {
        text::chunks(&self.arguments_string(), ARGUMENT_PIECE_CHARS)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    ToolCall,
}

/// Token usage of one exchange.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    /// Includes reasoning tokens, as OpenAI counts them.
    pub output: u64,
    pub cached: u64,
    pub reasoning: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input + self.output
    }
}

/// What the model answers.
#[derive(Clone, Debug)]
pub struct Completion {
    pub model: String,
    /// Visible text; may be empty when only a tool call is made.
    pub text: String,
    pub tool_call: Option<ToolCall>,
    pub finish: Finish,
    pub usage: Usage,
    /// Stream the text in pieces of this many characters instead of words.
    pub chunk_chars: Option<usize>,
}

impl Completion {
    /// Text pieces in streaming order.
    pub fn pieces(&self) -> Vec<String> {
        match self.chunk_chars {
            Some(n) => text::chunks(&self.text, n),
            None => text::pieces(&self.text),
        }
    }
}

/// Runs the simulated model. `preamble_with_tool` puts [`TOOL_PREAMBLE`] before a tool call
/// (Anthropic style); `id_seed` makes the tool-call id stable.
pub fn complete(
    conv: &Conversation,
    overrides: &Overrides,
    preamble_with_tool: bool,
    id_seed: &[u8],
) -> Completion {
    let input = conv
        .prompt_texts
        .iter()
        .map(|t| text::words(t))
        .sum::<u64>()
        + text::TOKENS_PER_MESSAGE * conv.messages
        + text::TOKENS_PER_TOOL * conv.tools.len() as u64;

    let tool_call = wants_tool(conv).map(|tool| ToolCall {
        id: text::id("call_", id_seed),
        name: tool.name.clone(),
        arguments: text::tool_arguments(&tool.parameters),
    });

    let (reply, finish) = match (&tool_call, &overrides.reply) {
        (Some(_), _) if preamble_with_tool => (TOOL_PREAMBLE.to_string(), Finish::ToolCall),
        (Some(_), _) => (String::new(), Finish::ToolCall),
        (None, Some(forced)) => limited(forced, conv.max_tokens),
        (None, None) => {
            let base = match &conv.tool_result {
                Some(result) => text::tool_result_reply(result),
                None => text::reply_text(&conv.last_user),
            };
            limited(&base, conv.max_tokens)
        }
    };

    let reasoning = overrides
        .reasoning_tokens
        .unwrap_or(if is_reasoning_model(&conv.model) {
            8
        } else {
            0
        });
    let tool_tokens = tool_call
        .as_ref()
        .map(|t| t.argument_pieces().len() as u64 + text::TOKENS_PER_TOOL_CALL)
        .unwrap_or(0);
    let output = text::pieces(&reply).len() as u64 + tool_tokens + reasoning;
    let cached = overrides.cached_tokens.unwrap_or(0).min(input);

    Completion {
        model: conv.model.clone(),
        text: reply,
        tool_call,
        finish,
        usage: Usage {
            input,
            output,
            cached,
            reasoning,
        },
        chunk_chars: overrides.chunk_chars,
    }
}

fn limited(reply: &str, max: Option<u64>) -> (String, Finish) {
    let (kept, cut) = text::limit(reply, max);
    (kept, if cut { Finish::Length } else { Finish::Stop })
}

fn wants_tool(conv: &Conversation) -> Option<&ToolDef> {
    if conv.tools.is_empty() || conv.tool_result.is_some() {
        return None;
    }
    let by_name = |name: &str| conv.tools.iter().find(|t| t.name == name);
    let weatherish = || {
        conv.tools
            .iter()
            .find(|t| t.name.to_ascii_lowercase().contains("weather"))
            .or(conv.tools.first())
    };
    match &conv.tool_choice {
        ToolChoice::None => None,
        ToolChoice::Named(name) => by_name(name).or(conv.tools.first()),
        ToolChoice::Required => weatherish(),
        ToolChoice::Auto if conv.last_user.to_ascii_lowercase().contains("weather") => weatherish(),
        ToolChoice::Auto => None,
    }
}

fn is_reasoning_model(model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    let m = m.rsplit('/').next().unwrap_or(&m);
    ["o1", "o3", "o4"].iter().any(|p| m.starts_with(p)) || m.contains("reason")
}

/// Text of an OpenAI/Anthropic-style `content` value: a string, or the `text` of each part.
pub fn content_text(content: &Json) -> String {
    match content {
        Json::String(s) => s.clone(),
        Json::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Json::String(s) => Some(s.clone()),
                other => other
                    .get("text")
                    .and_then(Json::as_str)
                    .map(str::to_string)
                    .or_else(|| {
                        // Anthropic tool_result blocks nest their own content.
                        other.get("content").map(content_text)
                    }),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conv(last_user: &str, tools: Vec<ToolDef>) -> Conversation {
        Conversation {
            model: "gpt-4o".into(),
            prompt_texts: vec!["Be brief.".into(), last_user.into()],
            messages: 2,
            last_user: last_user.into(),
            tools,
            ..Conversation::default()
        }
    }

    fn weather_tool() -> ToolDef {
        ToolDef {
            name: "get_weather".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }
    }

    #[test]
    fn plain_reply_counts_tokens() {
        let c = complete(
            &conv("hi there", vec![]),
            &Overrides::default(),
            false,
            b"x",
        );
        assert_eq!(c.text, "Hello from the simulator. You said: hi there");
        assert_eq!(c.finish, Finish::Stop);
        // 2 + 2 words, 2 messages * 3.
        assert_eq!(c.usage.input, 10);
        assert_eq!(c.usage.output, 8);
        assert_eq!(c.usage.total(), 18);
    }

    #[test]
    fn weather_triggers_the_tool() {
        let c = complete(
            &conv("What is the weather in Paris?", vec![weather_tool()]),
            &Overrides::default(),
            false,
            b"x",
        );
        let call = c.tool_call.expect("tool call");
        assert_eq!(call.name, "get_weather");
        assert_eq!(call.arguments, json!({"city": "Paris"}));
        assert_eq!(c.finish, Finish::ToolCall);
        assert!(c.text.is_empty());
        // Preamble variant keeps the text.
        let c = complete(
            &conv("weather?", vec![weather_tool()]),
            &Overrides::default(),
            true,
            b"x",
        );
        assert_eq!(c.text, TOOL_PREAMBLE);
    }

    #[test]
    fn tool_result_ends_the_loop() {
        let mut cv = conv("weather?", vec![weather_tool()]);
        cv.tool_result = Some("sunny, 21C".into());
        let c = complete(&cv, &Overrides::default(), false, b"x");
        assert!(c.tool_call.is_none());
        assert_eq!(
            c.text,
            "Hello from the simulator. The tool said: sunny, 21C"
        );
    }

    #[test]
    fn tool_choice_controls_the_call() {
        let mut cv = conv("hello", vec![weather_tool()]);
        cv.tool_choice = ToolChoice::Required;
        assert!(
            complete(&cv, &Overrides::default(), false, b"x")
                .tool_call
                .is_some()
        );
        cv.tool_choice = ToolChoice::None;
        cv.last_user = "weather".into();
        assert!(
            complete(&cv, &Overrides::default(), false, b"x")
                .tool_call
                .is_none()
        );
    }

    #[test]
    fn max_tokens_and_overrides() {
        let mut cv = conv("a b c d e f", vec![]);
        cv.max_tokens = Some(3);
        let ov = Overrides {
            reply: None,
            cached_tokens: Some(1000),
            reasoning_tokens: Some(4),
            chunk_chars: None,
        };
        let c = complete(&cv, &ov, false, b"x");
        assert_eq!(c.text, "Hello from the");
        assert_eq!(c.finish, Finish::Length);
        assert_eq!(c.usage.output, 3 + 4);
        assert_eq!(c.usage.cached, c.usage.input);
        assert_eq!(c.usage.reasoning, 4);
    }

    #[test]
    fn reasoning_models_bill_reasoning() {
        let mut cv = conv("hi", vec![]);
        cv.model = "o3-mini".into();
        assert_eq!(
            complete(&cv, &Overrides::default(), false, b"")
                .usage
                .reasoning,
            8
        );
    }

    #[test]
    fn content_text_flattens_parts() {
        assert_eq!(content_text(&json!("a")), "a");
        assert_eq!(
            content_text(
                &json!([{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}])
            ),
            "a b"
        );
        assert_eq!(
            content_text(
                &json!([{"type": "tool_result", "content": [{"type": "text", "text": "ok"}]}])
            ),
            "ok"
        );
    }
}
