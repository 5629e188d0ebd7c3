//! Where the guarded text sits in each API shape. Requests are walked in the client's format
//! (so a translated route guards what the client wrote); responses in the provider's, before
//! they are translated back (the text is the same either side).
//!
//! | part (scope)   | OpenAI chat                | Responses                         | Anthropic messages         | Gemini                       |
//! |----------------|----------------------------|-----------------------------------|----------------------------|------------------------------|
//! | systemPrompt   | `system`/`developer` msgs  | `instructions`, system/developer  | `system`                   | `systemInstruction`          |
//! | messages       | user/assistant content     | `input`, message items            | `text` blocks              | `text` parts                 |
//! | toolOutput     | `tool`/`function` messages | `function_call_output.output`     | `tool_result` content      | `functionResponse.response`  |
//! | toolInput      | `tool_calls[].arguments`   | `function_call.arguments`         | `tool_use.input`           | `functionCall.args`          |
//!
//! Tool arguments that are a JSON string (OpenAI) are guarded as one string, as agentgateway
//! does: a mask can make them invalid JSON. Structured ones (Anthropic, Gemini) are guarded
//! string leaf by string leaf, so they stay valid.

use serde_json::Value;

use super::Scope;
use crate::llm::RouteType;
use crate::llm::provider::Wire;

/// Which part of a request a text belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    SystemPrompt,
    Message,
    ToolOutput,
    ToolInput,
}

impl Part {
    pub fn scope(self) -> Scope {
        match self {
            Part::SystemPrompt => Scope::SYSTEM_PROMPT,
            Part::Message => Scope::MESSAGES,
            Part::ToolOutput => Scope::TOOL_OUTPUT,
            Part::ToolInput => Scope::TOOL_INPUT,
        }
    }
}

/// A visitor over guarded strings: the part, the speaker's role, and the text (editable).
pub type Visit<'a> = dyn FnMut(Part, &str, &mut String) + 'a;

/// Calls `f` on every string of a request body (client format `route`) within `scope`.
pub fn request(route: RouteType, body: &mut Value, scope: Scope, f: &mut Visit<'_>) {
    let mut g = |part: Part, role: &str, v: &mut Value| {
        if scope.has(part.scope()) {
            leaves(v, &mut |s| f(part, role, s));
        }
    };
    match route {
        RouteType::Completions => chat_request(body, &mut g),
        RouteType::Responses => responses_request(body, &mut g),
        RouteType::Messages => messages_request(body, &mut g),
        RouteType::GenerateContent => gemini_request(body, &mut g),
        RouteType::Embeddings => {
            if let Some(v) = body.get_mut("input") {
                g(Part::Message, "user", v);
            }
        }
        RouteType::CountTokens | RouteType::Models | RouteType::Passthrough => {}
    }
}

/// Every string in `v` (a string, or strings nested in arrays and objects).
fn leaves(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| leaves(x, f)),
        Value::Object(o) => o.values_mut().for_each(|x| leaves(x, f)),
        _ => {}
    }
}

type G<'a> = dyn FnMut(Part, &str, &mut Value) + 'a;

/// Content that is a string or a list of `{type: text|input_text|output_text, text}` parts.
fn content(v: &mut Value, part: Part, role: &str, g: &mut G<'_>) {
    match v {
        Value::String(_) => g(part, role, v),
        Value::Array(items) => {
            for it in items {
                let ty = it.get("type").and_then(Value::as_str).unwrap_or("text");
                if matches!(ty, "text" | "input_text" | "output_text")
                    && let Some(t) = it.get_mut("text")
                {
                    g(part, role, t);
                }
            }
        }
        _ => {}
    }
}

fn chat_request(body: &mut Value, g: &mut G<'_>) {
    let Some(msgs) = body.get_mut("messages").and_then(Value::as_array_mut) else {
        return;
    };
    for m in msgs {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user")
            .to_owned();
        let part = match role.as_str() {
            "system" | "developer" => Part::SystemPrompt,
            "tool" | "function" => Part::ToolOutput,
            _ => Part::Message,
        };
        if let Some(c) = m.get_mut("content") {
            content(c, part, &role, g);
        }
        if let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) {
            for c in calls {
                if let Some(a) = c.pointer_mut("/function/arguments") {
                    g(Part::ToolInput, &role, a);
                }
            }
        }
    }
}

fn responses_request(body: &mut Value, g: &mut G<'_>) {
    if let Some(i) = body.get_mut("instructions") {
        g(Part::SystemPrompt, "system", i);
    }
    let Some(input) = body.get_mut("input") else {
        return;
    };
    if input.is_string() {
        g(Part::Message, "user", input);
        return;
    }
    let Some(items) = input.as_array_mut() else {
        return;
    };
    for it in items {
        let ty = it.get("type").and_then(Value::as_str).unwrap_or("message");
        match ty {
            "function_call_output" => {
                if let Some(o) = it.get_mut("output") {
                    content(o, Part::ToolOutput, "tool", g);
                }
            }
            "function_call" => {
                if let Some(a) = it.get_mut("arguments") {
                    g(Part::ToolInput, "assistant", a);
                }
            }
            "message" => {
                let role = it
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("user")
                    .to_owned();
                let part = match role.as_str() {
                    "system" | "developer" => Part::SystemPrompt,
                    _ => Part::Message,
                };
                if let Some(c) = it.get_mut("content") {
                    content(c, part, &role, g);
                }
            }
            _ => {}
        }
    }
}

fn messages_request(body: &mut Value, g: &mut G<'_>) {
    if let Some(s) = body.get_mut("system") {
        content(s, Part::SystemPrompt, "system", g);
    }
    let Some(msgs) = body.get_mut("messages").and_then(Value::as_array_mut) else {
        return;
    };
    for m in msgs {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user")
            .to_owned();
        let Some(c) = m.get_mut("content") else {
            continue;
        };
        if c.is_string() {
            g(Part::Message, &role, c);
            continue;
        }
        for block in c.as_array_mut().into_iter().flatten() {
            match block.get("type").and_then(Value::as_str).unwrap_or("") {
                "text" => {
                    if let Some(t) = block.get_mut("text") {
                        g(Part::Message, &role, t);
                    }
                }
                "tool_result" => {
                    if let Some(t) = block.get_mut("content") {
                        content(t, Part::ToolOutput, "tool", g);
                    }
                }
                "tool_use" => {
                    if let Some(t) = block.get_mut("input") {
                        g(Part::ToolInput, &role, t);
                    }
                }
                _ => {}
            }
        }
    }
}

fn gemini_request(body: &mut Value, g: &mut G<'_>) {
    for key in ["systemInstruction", "system_instruction"] {
        if let Some(parts) = body
            .get_mut(key)
            .and_then(|s| s.get_mut("parts"))
            .and_then(Value::as_array_mut)
        {
            for p in parts {
                if let Some(t) = p.get_mut("text") {
                    g(Part::SystemPrompt, "system", t);
                }
            }
        }
    }
    for c in body
        .get_mut("contents")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let role = c
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user")
            .to_owned();
        for p in c
            .get_mut("parts")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(t) = p.get_mut("text") {
                g(Part::Message, &role, t);
            } else if let Some(r) = p
                .get_mut("functionResponse")
                .and_then(|f| f.get_mut("response"))
            {
                g(Part::ToolOutput, "tool", r);
            } else if let Some(a) = p.get_mut("functionCall").and_then(|f| f.get_mut("args")) {
                g(Part::ToolInput, &role, a);
            }
        }
    }
}

/// Calls `f` on every generated text of a whole (non-streamed) response in the provider's
/// format `wire` (`responses` for the OpenAI Responses API). The index says which choice,
/// output or candidate the text belongs to.
pub fn response(
    wire: Wire,
    responses: bool,
    body: &mut Value,
    f: &mut dyn FnMut(usize, &mut String),
) {
    let mut text = |i: usize, v: Option<&mut Value>| {
        if let Some(Value::String(s)) = v {
            f(i, s);
        }
    };
    match (wire, responses) {
        (Wire::OpenAi, true) => {
            for (i, item) in arr(body.get_mut("output")).enumerate() {
                for c in arr(item.get_mut("content")) {
                    if c.get("type").and_then(Value::as_str) == Some("output_text") {
                        text(i, c.get_mut("text"));
                    }
                }
            }
        }
        (Wire::OpenAi, false) => {
            for (i, ch) in arr(body.get_mut("choices")).enumerate() {
                text(i, ch.pointer_mut("/message/content"));
                // Legacy completions.
                text(i, ch.get_mut("text"));
            }
        }
        (Wire::Anthropic, _) => {
            for (i, block) in arr(body.get_mut("content")).enumerate() {
                if block.get("type").and_then(Value::as_str) == Some("text") {
                    text(i, block.get_mut("text"));
                }
            }
        }
        (Wire::Gemini, _) => {
            for (i, cand) in arr(body.get_mut("candidates")).enumerate() {
                for p in arr(cand.pointer_mut("/content/parts")) {
                    text(i, p.get_mut("text"));
                }
            }
        }
    }
}

fn arr(v: Option<&mut Value>) -> impl Iterator<Item = &mut Value> {
    v.and_then(Value::as_array_mut).into_iter().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn collect(route: RouteType, mut body: Value, scope: Scope) -> Vec<(Part, String)> {
        let mut out = Vec::new();
        request(route, &mut body, scope, &mut |p, _, s| {
            out.push((p, s.clone()))
        });
        out
    }

    const ALL: Scope = Scope(15);

    #[test]
    fn every_shape_and_scope() {
        let chat = json!({"messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "u"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "content": "result"}
        ]});
        assert_eq!(
            collect(RouteType::Completions, chat.clone(), ALL),
            vec![
                (Part::SystemPrompt, "sys".into()),
                (Part::Message, "hi".into()),
                (Part::ToolInput, "{\"a\":1}".into()),
                (Part::ToolOutput, "result".into()),
            ]
        );
        assert_eq!(
            collect(RouteType::Completions, chat, Scope::DEFAULT).len(),
            2
        );
        let msgs = json!({"system": [{"type": "text", "text": "sys"}], "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "input": {"q": "x", "n": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "content": [{"type": "text", "text": "r"}]}]}
        ]});
        assert_eq!(
            collect(RouteType::Messages, msgs, ALL),
            vec![
                (Part::SystemPrompt, "sys".into()),
                (Part::Message, "hi".into()),
                (Part::ToolInput, "x".into()),
                (Part::ToolOutput, "r".into()),
            ]
        );
        let resp = json!({"instructions": "sys", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call", "arguments": "{}"},
            {"type": "function_call_output", "output": "out"}
        ]});
        assert_eq!(collect(RouteType::Responses, resp, ALL).len(), 4);
        let gem = json!({"systemInstruction": {"parts": [{"text": "sys"}]}, "contents": [
            {"role": "user", "parts": [{"text": "hi"}, {"functionResponse": {"response": {"r": "v"}}}]}
        ]});
        assert_eq!(collect(RouteType::GenerateContent, gem, ALL).len(), 3);
    }
}
