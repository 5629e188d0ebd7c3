//! Simulator tests over real TCP (routing, auth, faults, introspection) and the golden
//! fixtures in `tests/testdata/` (regenerate with `UPDATE_GOLDEN=1 cargo test -p
//! gateway-tests golden`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value as Json, json};

use super::*;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

async fn sim() -> Simulator {
    Simulator::start(SimConfig::default())
        .await
        .expect("simulator starts")
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Result<Bytes, String>,
}

impl Answer {
    fn json(&self) -> Json {
        let body = self.body.as_ref().expect("complete body");
        serde_json::from_slice(body).expect("json body")
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(self.body.as_ref().expect("complete body")).into_owned()
    }
}

async fn send(
    sim: &Simulator,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Json>,
) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{}{path}", sim.base_url()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = req
        .header("content-type", "application/json")
        .body(Full::new(bytes))
        .expect("request");
    let resp = client().request(req).await.expect("response headers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(2), resp.into_body().collect())
        .await
        .map_err(|_| "timed out".to_string())
        .and_then(|r| r.map(|c| c.to_bytes()).map_err(|e| e.to_string()));
    Answer {
        status,
        headers,
        body,
    }
}

fn chat_body(model: &str, stream: bool) -> Json {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi there"}]})
}

const OPENAI_AUTH: (&str, &str) = ("authorization", "Bearer sk-test");

#[tokio::test]
async fn routes_by_suffix_and_records_credentials() {
    let sim = sim().await;
    for path in [
        "/v1/chat/completions",
        "/chat/completions",
        "/openai/v1/chat/completions",
        "/v1beta/openai/chat/completions",
    ] {
        let a = send(
            &sim,
            Method::POST,
            path,
            &[OPENAI_AUTH],
            Some(&chat_body("gpt-4o", false)),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.text());
        assert_eq!(a.json()["model"], "gpt-4o-sim-2024");
        assert_eq!(a.headers["x-request-id"], "req_sim");
    }
    let recorded = sim.requests();
    assert_eq!(recorded.len(), 4);
    assert_eq!(recorded[2].path, "/openai/v1/chat/completions");
    assert_eq!(recorded[2].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(recorded[2].endpoint.as_deref(), Some("openai.chat"));
    assert_eq!(recorded[2].status, Some(200));
    assert_eq!(recorded[2].body["model"], "gpt-4o");

    // Introspection over HTTP matches, and reset clears it.
    let listed = send(&sim, Method::GET, "/_sim/requests", &[], None)
        .await
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(4));
    assert_eq!(listed[0]["headers"]["authorization"], "Bearer sk-test");
    send(&sim, Method::POST, "/_sim/reset", &[], None).await;
    assert!(sim.requests().is_empty());
    let health = send(&sim, Method::GET, "/health", &[], None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(sim.requests().is_empty(), "health checks are not recorded");
    sim.shutdown().await;
}

#[tokio::test]
async fn credentials_are_required_per_provider() {
    let sim = sim().await;
    let a = send(
        &sim,
        Method::POST,
        "/v1/chat/completions",
        &[],
        Some(&chat_body("m", false)),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json()["error"]["code"], "invalid_api_key");

    let msg = json!({"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let a = send(
        &sim,
        Method::POST,
        "/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        Some(&msg),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json()["error"]["type"], "authentication_error");
    let a = send(
        &sim,
        Method::POST,
        "/v1/messages",
        &[("x-api-key", "k")],
        Some(&msg),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "anthropic-version is mandatory"
    );
    let a = send(
        &sim,
        Method::POST,
        "/anthropic/v1/messages",
        &[("x-api-key", "k"), ("anthropic-version", "2023-06-01")],
        Some(&msg),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["request-id"], "req_sim");

    let gem = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let path = "/v1beta/models/gemini-2.0-flash:generateContent";
    let a = send(&sim, Method::POST, path, &[], Some(&gem)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json()["error"]["status"], "UNAUTHENTICATED");
    let a = send(
        &sim,
        Method::POST,
        &format!("{path}?key=k"),
        &[],
        Some(&gem),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(
        &sim,
        Method::POST,
        path,
        &[("x-goog-api-key", "k")],
        Some(&gem),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);

    let azure = "/openai/deployments/dep/chat/completions";
    let a = send(
        &sim,
        Method::POST,
        azure,
        &[("api-key", "k")],
        Some(&chat_body("x", false)),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::NOT_FOUND,
        "api-version is mandatory on Azure"
    );
    let a = send(
        &sim,
        Method::POST,
        &format!("{azure}?api-version=2024-10-21"),
        &[("api-key", "k")],
        Some(&chat_body("x", false)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["model"], "dep-sim-2024");

    let open = Simulator::start(SimConfig {
        require_auth: false,
        ..SimConfig::default()
    })
    .await
    .expect("start");
    let a = send(
        &open,
        Method::POST,
        "/v1/chat/completions",
        &[],
        Some(&chat_body("m", false)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_paths_methods_and_bad_json() {
    let sim = sim().await;
    let a = send(
        &sim,
        Method::POST,
        "/v1/nothing",
        &[OPENAI_AUTH],
        Some(&json!({})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.json()["error"]["message"].as_str().is_some());
    let a = send(
        &sim,
        Method::GET,
        "/v1/chat/completions",
        &[OPENAI_AUTH],
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);

    let req = Request::post(format!("{}/v1/chat/completions", sim.base_url()))
        .header("authorization", "Bearer k")
        .body(Full::new(Bytes::from_static(b"{not json")))
        .expect("request");
    let resp = client().request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(sim.requests()[2].body_text.as_deref(), Some("{not json"));

    let a = send(&sim, Method::GET, "/v1/models", &[OPENAI_AUTH], None).await;
    assert_eq!(a.json()["object"], "list");
    let a = send(
        &sim,
        Method::GET,
        "/v1/models",
        &[("x-api-key", "k"), ("anthropic-version", "2023-06-01")],
        None,
    )
    .await;
    assert_eq!(a.json()["has_more"], false);
    let a = send(
        &sim,
        Method::GET,
        "/v1beta/models",
        &[("x-goog-api-key", "k")],
        None,
    )
    .await;
    assert!(a.json()["models"].is_array());
}

#[tokio::test]
async fn status_faults_have_provider_shapes() {
    let sim = sim().await;
    let a = send(
        &sim,
        Method::POST,
        "/v1/chat/completions",
        &[
            OPENAI_AUTH,
            ("x-sim-fault", "429"),
            ("x-sim-retry-after", "7"),
        ],
        Some(&chat_body("m", false)),
    )
    .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.headers["retry-after"], "7");
    assert_eq!(a.json()["error"]["code"], "rate_limit_exceeded");

    let a = send(
        &sim,
        Method::POST,
        "/v1/chat/completions",
        &[OPENAI_AUTH],
        Some(&chat_body("fault-500", false)),
    )
    .await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.json()["error"]["type"], "server_error");
    assert_eq!(sim.requests()[1].fault.as_deref(), Some("500"));

    let gem = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let a = send(
        &sim,
        Method::POST,
        "/v1beta/models/fault-503:generateContent?key=k",
        &[],
        Some(&gem),
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.json()["error"]["status"], "UNAVAILABLE");

    let a = send(
        &sim,
        Method::POST,
        "/v1/chat/completions",
        &[OPENAI_AUTH, ("x-sim-fault", "boom")],
        Some(&chat_body("m", false)),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "unknown faults are refused loudly"
    );
}

#[tokio::test]
async fn fault_times_limits_the_failures() {
    let sim = sim().await;
    let headers = [
        OPENAI_AUTH,
        ("x-sim-fault", "500"),
        ("x-sim-fault-times", "2"),
    ];
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            send(
                &sim,
                Method::POST,
                "/v1/chat/completions",
                &headers,
                Some(&chat_body("m", false)),
            )
            .await
            .status,
        );
    }
    assert_eq!(
        statuses,
        [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::OK
        ]
    );
    sim.reset();
    let a = send(
        &sim,
        Method::POST,
        "/v1/chat/completions",
        &headers,
        Some(&chat_body("m", false)),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "reset re-arms the fault"
    );
}

#[tokio::test]
async fn slow_and_chunk_delays() {
    let sim = sim().await;
    let start = Instant::now();
    let a = send(
        &sim,
        Method::POST,
        "/v1/chat/completions",
        &[
            OPENAI_AUTH,
            ("x-sim-fault", "slow"),
            ("x-sim-delay-ms", "300"),
        ],
        Some(&chat_body("m", false)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(start.elapsed() >= Duration::from_millis(300));

    let start = Instant::now();
    let a = send(
        &sim,
        Method::POST,
        "/v1/chat/completions",
        &[OPENAI_AUTH, ("x-sim-chunk-delay-ms", "20")],
        Some(&chat_body("m", true)),
    )
    .await;
    // 11 events, 10 gaps.
    assert!(a.text().ends_with("data: [DONE]\n\n"));
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn stream_faults() {
    let sim = sim().await;
    let msg = json!({"model": "claude", "max_tokens": 100, "stream": true, "messages": [{"role": "user", "content": "hi there"}]});
    let anth = [("x-api-key", "k"), ("anthropic-version", "2023-06-01")];
    let with = |fault: &'static str| {
        let mut h = anth.to_vec();
        h.push(("x-sim-fault", fault));
        h
    };

    let a = send(
        &sim,
        Method::POST,
        "/v1/messages",
        &with("truncate"),
        Some(&msg),
    )
    .await;
    let text = a.text();
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(!text.contains("message_stop"), "{text}");

    let a = send(
        &sim,
        Method::POST,
        "/v1/messages",
        &with("malformed"),
        Some(&msg),
    )
    .await;
    assert!(a.text().contains("unterminated"));
    assert!(a.text().contains("event: message_stop"));

    let a = send(
        &sim,
        Method::POST,
        "/v1/messages",
        &with("midstream-error"),
        Some(&msg),
    )
    .await;
    assert!(a.text().contains("event: error\ndata: {\"type\":\"error\""));

    let a = send(
        &sim,
        Method::POST,
        "/v1/messages",
        &with("stall"),
        Some(&msg),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body.err().as_deref(), Some("timed out"));

    let a = send(
        &sim,
        Method::POST,
        "/v1/messages",
        &with("reset"),
        Some(&msg),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let err = a.body.expect_err("reset aborts the body");
    assert_ne!(err, "timed out");

    // Body faults on plain JSON answers.
    let a = send(
        &sim,
        Method::POST,
        "/v1/chat/completions",
        &[OPENAI_AUTH, ("x-sim-fault", "truncate")],
        Some(&chat_body("m", false)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(serde_json::from_slice::<Json>(a.body.as_ref().expect("body")).is_err());
    let a = send(
        &sim,
        Method::POST,
        "/v1/chat/completions",
        &[OPENAI_AUTH, ("x-sim-fault", "midstream-error")],
        Some(&chat_body("m", false)),
    )
    .await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn route_table() {
    use server::Endpoint;
    let none = http::HeaderMap::new();
    let mut anth = http::HeaderMap::new();
    anth.insert(
        "anthropic-version",
        http::HeaderValue::from_static("2023-06-01"),
    );
    let gem = |m: &str, stream| {
        Endpoint::Gemini(gemini::Target {
            model: m.into(),
            stream,
        })
    };
    let cases: &[(&str, &http::HeaderMap, Option<Endpoint>)] = &[
        ("/v1/chat/completions", &none, Some(Endpoint::Chat)),
        ("/chat/completions", &none, Some(Endpoint::Chat)),
        (
            "/api/openai/v1/chat/completions/",
            &none,
            Some(Endpoint::Chat),
        ),
        (
            "/v1beta/openai/chat/completions",
            &none,
            Some(Endpoint::Chat),
        ),
        ("/v1/embeddings", &none, Some(Endpoint::Embeddings)),
        ("/v1/responses", &none, Some(Endpoint::Responses)),
        ("/v1/models", &none, Some(Endpoint::OpenAiModels)),
        ("/v1/models", &anth, Some(Endpoint::AnthropicModels)),
        ("/v1beta/models", &none, Some(Endpoint::GeminiModels)),
        ("/v1beta/openai/models", &none, Some(Endpoint::OpenAiModels)),
        ("/v1/messages", &none, Some(Endpoint::Messages)),
        ("/anthropic/v1/messages", &none, Some(Endpoint::Messages)),
        (
            "/v1/messages/count_tokens",
            &none,
            Some(Endpoint::CountTokens),
        ),
        (
            "/openai/deployments/d1/chat/completions",
            &none,
            Some(Endpoint::AzureChat("d1".into())),
        ),
        (
            "/openai/deployments/d1/embeddings",
            &none,
            Some(Endpoint::AzureEmbeddings("d1".into())),
        ),
        ("/openai/deployments/d1/images", &none, None),
        ("/openai/v1/chat/completions", &none, Some(Endpoint::Chat)),
        (
            "/v1beta/models/gemini-2.0-flash:generateContent",
            &none,
            Some(gem("gemini-2.0-flash", false)),
        ),
        (
            "/v1beta/models/g:streamGenerateContent",
            &none,
            Some(gem("g", true)),
        ),
        (
            "/v1/projects/p/locations/us/publishers/google/models/g:generateContent",
            &none,
            Some(gem("g", false)),
        ),
        ("/v1/completions", &none, None),
        ("/", &none, None),
    ];
    for (path, headers, want) in cases {
        assert_eq!(&Endpoint::route(path, headers), want, "{path}");
    }
}

// === golden fixtures ===

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
