//! Simulator tests over real TCP: routing, auth, faults, introspection. The golden fixtures
//! live in `golden.rs`.

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

pub(super) fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub(super) async fn sim() -> Simulator {
    Simulator::start(SimConfig::default())
        .await
        .expect("simulator starts")
}

pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: http::HeaderMap,
    pub(super) body: Result<Bytes, String>,
}

impl Answer {
    pub(super) fn json(&self) -> Json {
        let body = self.body.as_ref().expect("complete body");
        serde_json::from_slice(body).expect("json body")
    }
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(self.body.as_ref().expect("complete body")).into_owned()
    }
}

pub(super) async fn send(
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
        (
            "/v1beta/models/e:batchEmbedContents",
            &none,
            Some(Endpoint::GeminiEmbed {
                model: "e".into(),
                batch: true,
            }),
        ),
        ("/v1/completions", &none, None),
        ("/", &none, Some(Endpoint::Sts)),
        ("/token", &none, Some(Endpoint::GoogleToken)),
        (
            "/model/amazon.nova-lite-v1%3A0/converse",
            &none,
            Some(Endpoint::Bedrock {
                model: "amazon.nova-lite-v1:0".into(),
                stream: false,
            }),
        ),
        (
            "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-x@20250101:streamRawPredict",
            &none,
            Some(Endpoint::VertexAnthropic {
                model: "claude-x@20250101".into(),
                stream: true,
            }),
        ),
    ];
    for (path, headers, want) in cases {
        assert_eq!(&Endpoint::route(path, headers), want, "{path}");
    }
}
