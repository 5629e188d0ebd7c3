//! Deterministic building blocks: reply text, word pieces, token counts, ids, embeddings.
//!
//! Everything here is a pure function of its input, so a request always yields the same
//! response bytes and golden fixtures stay stable. The token rules are documented on each
//! function so black-box tests can recompute the numbers the simulator reports.

use serde_json::{Map, Value as Json, json};

/// First words of every text reply.
pub const REPLY_PREFIX: &str = "Hello from the simulator.";
/// Suffix appended to the request model to form the response model, so tests can tell the
/// two apart (real providers answer `gpt-4o` with `gpt-4o-2024-08-06`).
pub const MODEL_SUFFIX: &str = "-sim-2024";
/// The `created` timestamp of every object (2023-11-14T22:13:20Z): fixed for golden files.
pub const CREATED: u64 = 1_700_000_000;
/// How many words of the user's message the reply echoes.
const ECHO_WORDS: usize = 48;
/// Token overhead per message in a prompt (role markers and separators).
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Token overhead per tool definition in a prompt.
pub const TOKENS_PER_TOOL: u64 = 10;
/// Extra completion tokens billed for a tool call besides its argument pieces.
pub const TOKENS_PER_TOOL_CALL: u64 = 5;
/// Default embedding width when the request does not ask for `dimensions`.
pub const DEFAULT_EMBEDDING_DIMS: usize = 16;

/// Whitespace word count: the simulator's tokenizer.
pub fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The reply to a user message: [`REPLY_PREFIX`] then `You said: <first 48 words>`.
pub fn reply_text(last_user: &str) -> String {
    let echoed: Vec<&str> = last_user.split_whitespace().take(ECHO_WORDS).collect();
    if echoed.is_empty() {
        REPLY_PREFIX.to_string()
    } else {
        format!("{REPLY_PREFIX} You said: {}", echoed.join(" "))
    }
}

/// The reply once the caller sent back a tool result.
pub fn tool_result_reply(result: &str) -> String {
    let echoed: Vec<&str> = result.split_whitespace().take(ECHO_WORDS).collect();
    format!("{REPLY_PREFIX} The tool said: {}", echoed.join(" "))
}

/// Splits text into streaming pieces, one word each, the separating space leading the word
/// (`"Hello"`, `" from"`, ...), so concatenating the pieces gives back the text.
pub fn pieces(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split(' ') {
        match out.last_mut() {
            // Empty words come from repeated spaces: keep them attached so nothing is lost.
            Some(last) if word.is_empty() => last.push(' '),
            Some(_) => out.push(format!(" {word}")),
            None => out.push(word.to_string()),
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

/// Splits a string into pieces of at most `n` characters (on char boundaries).
pub fn chunks(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(n.max(1))
        .map(|c| c.iter().collect::<String>())
        .collect()
}

/// Cuts `text` to at most `max` pieces. Returns the kept text and whether it was cut.
pub fn limit(text: &str, max: Option<u64>) -> (String, bool) {
    let all = pieces(text);
    match max {
        Some(max) if (all.len() as u64) > max => {
            let kept: String = all.into_iter().take(max as usize).collect();
            (kept, true)
        }
        _ => (text.to_string(), false),
    }
}

/// The response model for a request model; empty when the request named none.
pub fn response_model(request_model: &str, default: &str) -> String {
    let base = if request_model.is_empty() {
        default
    } else {
        request_model
    };
    if base.ends_with(MODEL_SUFFIX) {
        base.to_string()
    } else {
        format!("{base}{MODEL_SUFFIX}")
    }
}

/// 64-bit FNV-1a: a stable hash for ids and embedding seeds.
pub fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A stable id such as `chatcmpl-sim3f2a...`, derived from the request bytes.
pub fn id(prefix: &str, seed: &[u8]) -> String {
    format!("{prefix}sim{:016x}", fnv64(seed))
}

/// A unit-length pseudo-random vector seeded by the text.
pub fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut state = fnv64(text.as_bytes()) | 1;
    let mut v: Vec<f32> = (0..dims.max(1))
        .map(|_| {
            // xorshift64*: cheap and good enough to make different texts differ.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
            ((r >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Standard base64 (RFC 4648, padded): how OpenAI sends `encoding_format: base64` vectors.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Arguments for a tool call that satisfy the tool's JSON schema well enough for tests:
/// required properties (or all, when none are marked required) get a typed sample value,
/// and a property that looks like a place gets `"Paris"`.
pub fn tool_arguments(schema: &Json) -> Json {
    let Some(props) = schema.get("properties").and_then(Json::as_object) else {
        return json!({});
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Json::as_array)
        .map(|r| r.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let mut args = Map::new();
    for (name, prop) in props {
        if !required.is_empty() && !required.contains(&name.as_str()) {
            continue;
        }
        args.insert(name.clone(), sample_value(name, prop));
    }
    Json::Object(args)
}

fn sample_value(name: &str, prop: &Json) -> Json {
    if let Some(first) = prop
        .get("enum")
        .and_then(Json::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let ty = prop
        .get("type")
        .map(|t| match t {
            Json::Array(types) => types.first().and_then(Json::as_str).unwrap_or("string"),
            other => other.as_str().unwrap_or("string"),
        })
        .unwrap_or("string")
        .to_ascii_lowercase();
    match ty.as_str() {
        "integer" | "number" => json!(1),
        "boolean" => json!(true),
        "array" => json!([]),
        "object" => tool_arguments(prop),
        _ => {
            let lower = name.to_ascii_lowercase();
            if ["location", "city", "place", "where"]
                .iter()
                .any(|k| lower.contains(k))
            {
                json!("Paris")
            } else {
                json!("sim")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_rebuild_the_text() {
        for text in ["Hello from the simulator.", "a  b", " lead", "", "one"] {
            assert_eq!(pieces(text).concat(), text, "{text:?}");
        }
        assert_eq!(pieces("Hello from you"), ["Hello", " from", " you"]);
    }

    #[test]
    fn reply_echoes_the_user() {
        assert_eq!(
            reply_text("  what is   up "),
            "Hello from the simulator. You said: what is up"
        );
        assert_eq!(reply_text(""), REPLY_PREFIX);
    }

    #[test]
    fn limit_cuts_on_pieces() {
        assert_eq!(limit("a b c d", Some(2)), ("a b".to_string(), true));
        assert_eq!(limit("a b", Some(2)), ("a b".to_string(), false));
        assert_eq!(limit("a b", None), ("a b".to_string(), false));
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn embeddings_are_stable_unit_vectors() {
        let a = embedding("hello", 8);
        assert_eq!(a, embedding("hello", 8));
        assert_ne!(a, embedding("world", 8));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }

    #[test]
    fn tool_arguments_follow_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"}
            },
            "required": ["location", "unit"]
        });
        assert_eq!(
            tool_arguments(&schema),
            json!({"location": "Paris", "unit": "celsius"})
        );
        assert_eq!(tool_arguments(&json!({})), json!({}));
    }

    #[test]
    fn response_model_adds_the_suffix_once() {
        assert_eq!(response_model("gpt-4o", "x"), "gpt-4o-sim-2024");
        assert_eq!(response_model("gpt-4o-sim-2024", "x"), "gpt-4o-sim-2024");
        assert_eq!(response_model("", "dflt"), "dflt-sim-2024");
    }
}
