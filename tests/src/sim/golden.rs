//! Golden fixtures in `tests/testdata/`: exact request bodies and the exact bytes the
//! simulator answers with. Regenerate after an intended change with
//! `UPDATE_GOLDEN=1 cargo test -p gateway-tests golden`.

use http::Method;
use serde_json::{Value as Json, json};

use super::tests::{send, sim};

/// One fixture: where the request goes, and the files it produces.
struct Case {
    dir: &'static str,
    name: &'static str,
    method: Method,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Option<Json>,
}

fn weather_openai_tools() -> Json {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}
    }}])
}

fn cases() -> Vec<Case> {
    let chat = |stream: bool, usage: bool| {
        let mut b = json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Tell me a joke about proxies"}
            ],
            "max_tokens": 64,
            "temperature": 0.2
        });
        if stream {
            b["stream"] = json!(true);
        }
        if usage {
            b["stream_options"] = json!({"include_usage": true});
        }
        b
    };
    let chat_tools = |stream: bool| {
        json!({
            "model": "gpt-4o-mini",
            "stream": stream,
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": weather_openai_tools(),
            "tool_choice": "auto"
        })
    };
    let messages = |stream: bool| {
        json!({
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 256,
            "stream": stream,
            "system": "You are terse.",
            "messages": [{"role": "user", "content": "Tell me a joke about proxies"}]
        })
    };
    let messages_tools = |stream: bool| {
        json!({
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 256,
            "stream": stream,
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": [{"name": "get_weather", "description": "Current weather for a city",
                       "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}]
        })
    };
    let gemini = json!({
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "contents": [{"role": "user", "parts": [{"text": "Tell me a joke about proxies"}]}],
        "generationConfig": {"maxOutputTokens": 64, "temperature": 0.2}
    });
    let gemini_tools = json!({
        "contents": [{"role": "user", "parts": [{"text": "What is the weather in Paris?"}]}],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Current weather for a city",
            "parameters": {"type": "OBJECT", "properties": {"location": {"type": "STRING"}}, "required": ["location"]}}]}]
    });
    const OA: &[(&str, &str)] = &[("authorization", "Bearer sk-test")];
    const AN: &[(&str, &str)] = &[
        ("x-api-key", "sk-ant-test"),
        ("anthropic-version", "2023-06-01"),
    ];
    const GO: &[(&str, &str)] = &[("x-goog-api-key", "g-test")];
    const AZ: &[(&str, &str)] = &[("api-key", "az-test")];
    let post = |dir, name, path, headers, body| Case {
        dir,
        name,
        method: Method::POST,
        path,
        headers,
        body: Some(body),
    };
    vec![
        post(
            "openai",
            "chat",
            "/v1/chat/completions",
            OA,
            chat(false, false),
        ),
        post(
            "openai",
            "chat_stream",
            "/v1/chat/completions",
            OA,
            chat(true, false),
        ),
        post(
            "openai",
            "chat_stream_usage",
            "/v1/chat/completions",
            OA,
            chat(true, true),
        ),
        post(
            "openai",
            "chat_tools",
            "/v1/chat/completions",
            OA,
            chat_tools(false),
        ),
        post(
            "openai",
            "chat_tools_stream",
            "/v1/chat/completions",
            OA,
            chat_tools(true),
        ),
        post(
            "openai",
            "embeddings",
            "/v1/embeddings",
            OA,
            json!({"model": "text-embedding-3-small", "input": ["hello world", "goodbye"], "dimensions": 4}),
        ),
        post(
            "openai",
            "responses",
            "/v1/responses",
            OA,
            json!({"model": "gpt-4o-mini", "instructions": "You are terse.", "input": "Tell me a joke about proxies"}),
        ),
        post(
            "openai",
            "responses_stream",
            "/v1/responses",
            OA,
            json!({"model": "gpt-4o-mini", "stream": true, "input": [{"role": "user", "content": [{"type": "input_text", "text": "Tell me a joke about proxies"}]}]}),
        ),
        Case {
            dir: "openai",
            name: "models",
            method: Method::GET,
            path: "/v1/models",
            headers: OA,
            body: None,
        },
        post(
            "azure",
            "chat",
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
            AZ,
            chat(false, false),
        ),
        post(
            "azure",
            "chat_stream_usage",
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
            AZ,
            chat(true, true),
        ),
        post("anthropic", "messages", "/v1/messages", AN, messages(false)),
        post(
            "anthropic",
            "messages_stream",
            "/v1/messages",
            AN,
            messages(true),
        ),
        post(
            "anthropic",
            "messages_tools",
            "/v1/messages",
            AN,
            messages_tools(false),
        ),
        post(
            "anthropic",
            "messages_tools_stream",
            "/v1/messages",
            AN,
            messages_tools(true),
        ),
        post(
            "gemini",
            "generate",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            GO,
            gemini.clone(),
        ),
        post(
            "gemini",
            "generate_stream",
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
            GO,
            gemini.clone(),
        ),
        post(
            "gemini",
            "generate_stream_array",
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
            GO,
            gemini,
        ),
        post(
            "gemini",
            "generate_tools",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            GO,
            gemini_tools,
        ),
        // Error shapes, as the simulator sends them for injected faults.
        Case {
            dir: "openai",
            name: "error_429",
            method: Method::POST,
            path: "/v1/chat/completions",
            headers: &[("authorization", "Bearer sk-test"), ("x-sim-fault", "429")],
            body: Some(chat(false, false)),
        },
        Case {
            dir: "anthropic",
            name: "error_529",
            method: Method::POST,
            path: "/v1/messages",
            headers: &[
                ("x-api-key", "k"),
                ("anthropic-version", "2023-06-01"),
                ("x-sim-fault", "529"),
            ],
            body: Some(messages(false)),
        },
        Case {
            dir: "gemini",
            name: "error_429",
            method: Method::POST,
            path: "/v1beta/models/gemini-2.0-flash:generateContent",
            headers: &[("x-goog-api-key", "k"), ("x-sim-fault", "429")],
            body: Some(json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})),
        },
    ]
}

/// Compares (or with `UPDATE_GOLDEN=1` rewrites) every fixture. Goes through TCP so the
/// fixtures are exactly what a client receives.
#[tokio::test]
async fn golden_fixtures() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let sim = sim().await;
    let root = crate::testdata_dir();
    let mut mismatches = Vec::new();
    for case in cases() {
        let a = send(
            &sim,
            case.method.clone(),
            case.path,
            case.headers,
            case.body.as_ref(),
        )
        .await;
        let streamed = a
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
            || case.path.contains("streamGenerateContent");
        let (ext, got) = if streamed {
            let ext = if case.path.contains("alt=sse") || !case.path.contains("streamGenerate") {
                "sse"
            } else {
                "json"
            };
            (format!("stream.{ext}"), a.text())
        } else {
            let pretty = serde_json::to_string_pretty(&a.json()).expect("json") + "\n";
            ("response.json".to_string(), pretty)
        };
        let dir = root.join(case.dir);
        let files = [
            case.body.as_ref().map(|b| {
                (
                    format!("{}.request.json", case.name),
                    serde_json::to_string_pretty(b).expect("json") + "\n",
                )
            }),
            Some((format!("{}.{ext}", case.name), got)),
        ];
        for (file, content) in files.into_iter().flatten() {
            let path = dir.join(&file);
            if update {
                std::fs::create_dir_all(&dir).expect("mkdir testdata");
                std::fs::write(&path, &content).expect("write fixture");
            } else {
                let want = std::fs::read_to_string(&path).unwrap_or_default();
                if want != content {
                    mismatches.push(format!("{}/{file}", case.dir));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "fixtures differ (rerun with UPDATE_GOLDEN=1 if the change is intended): {mismatches:?}"
    );
}
