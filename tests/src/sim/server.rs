//! The HTTP side of the simulator: accept loop (HTTP/1.1 and h2c), per-request phases
//! (read body → record → route → authenticate → inject faults → answer → pace the body),
//! and the `/_sim/*` introspection endpoints.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::cloud::Keys;
use super::fault::{self, BodyFault, Faults};
use super::record::{RecordedRequest, Recorder};
use super::stream::{self, StreamError};
use super::{
    Dialect, Reply, Shared, SimConfig, SimRequest, anthropic, bedrock, gemini, openai, responses,
};

/// Request bodies larger than this are refused with 413.
const MAX_BODY: usize = 32 * 1024 * 1024;

type SimBody = BoxBody<Bytes, StreamError>;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// State shared by every connection.
#[derive(Debug)]
pub struct State {
    pub config: SimConfig,
    pub recorder: Recorder,
    /// Requests seen per fault spec, for `x-sim-fault-times`.
    fault_counts: Mutex<HashMap<String, u64>>,
    /// AWS keys and Google tokens issued by the simulated STS and token endpoint.
    pub keys: Keys,
}

impl State {
    fn reset(&self) {
        self.recorder.clear();
        self.fault_counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Whether this request is still within the spec's `x-sim-fault-times` budget.
    fn arm(&self, faults: &Faults) -> bool {
        let Some(times) = faults.times else {
            return true;
        };
        let mut counts = self.fault_counts.lock().unwrap_or_else(|e| e.into_inner());
        let seen = counts.entry(faults.spec.clone()).or_insert(0);
        *seen += 1;
        *seen <= times
    }
}

/// A running simulator.
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    state: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

// === impl Simulator ===

impl Simulator {
    /// Binds and starts serving in the background.
    pub async fn start(config: SimConfig) -> Result<Simulator, SimError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: config.listen,
            source,
        })?;
        let state = Arc::new(State {
            config,
            recorder: Recorder::default(),
            fault_counts: Mutex::new(HashMap::new()),
            keys: Keys::default(),
        });
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, state.clone(), rx));
        Ok(Simulator {
            addr,
            state,
            shutdown: Some(tx),
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.recorder.list()
    }

    /// Forgets recorded requests and fault counters.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stops accepting and drops every open connection.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Shared, mut shutdown: oneshot::Receiver<()>) {
    // Dropping the set at the end aborts every connection task.
    let mut conns = JoinSet::new();
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while conns.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req| handle(state.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Which simulated endpoint a request is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Embeddings,
    Responses,
    OpenAiModels,
    AzureChat(String),
    AzureEmbeddings(String),
    Messages,
    CountTokens,
    AnthropicModels,
    Gemini(gemini::Target),
    /// `true` for `:batchEmbedContents`.
    GeminiEmbed {
        model: String,
        batch: bool,
    },
    GeminiModels,
    /// Bedrock Converse (`stream`: ConverseStream); the decoded model id.
    Bedrock {
        model: String,
        stream: bool,
    },
    /// Claude on Vertex AI (`:rawPredict` / `:streamRawPredict`).
    VertexAnthropic {
        model: String,
        stream: bool,
    },
    /// STS `AssumeRoleWithWebIdentity` (`POST /` with a form body).
    Sts,
    /// Google's OAuth token endpoint (`POST /token`).
    GoogleToken,
}

impl Endpoint {
    /// Routes by path suffix, so any prefix (`/openai/v1/...`) works.
    pub fn route(path: &str, headers: &HeaderMap) -> Option<Endpoint> {
        if path == "/" {
            return Some(Endpoint::Sts);
        }
        if path == "/token" {
            return Some(Endpoint::GoogleToken);
        }
        if let Some((model, stream)) = bedrock::target(path) {
            return Some(Endpoint::Bedrock { model, stream });
        }
        if let Some((_, rest)) = path.split_once("/publishers/anthropic/models/") {
            let (model, op) = rest.rsplit_once(':')?;
            let stream = match op {
                "rawPredict" => false,
                "streamRawPredict" => true,
                _ => return None,
            };
            return Some(Endpoint::VertexAnthropic {
                model: model.to_owned(),
                stream,
            });
        }
        if let Some((_, rest)) = path.split_once("/openai/deployments/") {
            let (deployment, op) = rest.split_once('/')?;
            return match op {
                "chat/completions" => Some(Endpoint::AzureChat(deployment.to_string())),
                "embeddings" => Some(Endpoint::AzureEmbeddings(deployment.to_string())),
                _ => None,
            };
        }
        if let Some(t) = gemini::target(path) {
            return Some(Endpoint::Gemini(t));
        }
        if let Some((model, batch)) = gemini::embed_target(path) {
            return Some(Endpoint::GeminiEmbed { model, batch });
        }
        let p = path.trim_end_matches('/');
        if p.ends_with("/chat/completions") {
            Some(Endpoint::Chat)
        } else if p.ends_with("/embeddings") {
            Some(Endpoint::Embeddings)
        } else if p.ends_with("/responses") {
            Some(Endpoint::Responses)
        } else if p.ends_with("/messages/count_tokens") {
            Some(Endpoint::CountTokens)
        } else if p.ends_with("/messages") {
            Some(Endpoint::Messages)
        } else if p.ends_with("/models") {
            // Gemini's OpenAI-compatible surface (`/v1beta/openai/models`) answers like OpenAI.
            Some(if p.contains("/v1beta") && !p.contains("/openai/") {
                Endpoint::GeminiModels
            } else if headers.contains_key("anthropic-version") || headers.contains_key("x-api-key")
            {
                Endpoint::AnthropicModels
            } else {
                Endpoint::OpenAiModels
            })
        } else {
            None
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::Chat => "openai.chat",
            Endpoint::Embeddings => "openai.embeddings",
            Endpoint::Responses => "openai.responses",
            Endpoint::OpenAiModels => "openai.models",
            Endpoint::AzureChat(_) => "azure.chat",
            Endpoint::AzureEmbeddings(_) => "azure.embeddings",
            Endpoint::Messages => "anthropic.messages",
            Endpoint::CountTokens => "anthropic.count_tokens",
            Endpoint::AnthropicModels => "anthropic.models",
            Endpoint::Gemini(t) if t.stream => "gemini.stream",
            Endpoint::Gemini(_) => "gemini.generate",
            Endpoint::GeminiEmbed { .. } => "gemini.embed",
            Endpoint::GeminiModels => "gemini.models",
            Endpoint::Bedrock { stream: true, .. } => "bedrock.converse_stream",
            Endpoint::Bedrock { .. } => "bedrock.converse",
            Endpoint::VertexAnthropic { stream: true, .. } => "vertex.anthropic.stream",
            Endpoint::VertexAnthropic { .. } => "vertex.anthropic",
            Endpoint::Sts => "sts.assume_role_with_web_identity",
            Endpoint::GoogleToken => "google.token",
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Endpoint::Messages
            | Endpoint::CountTokens
            | Endpoint::AnthropicModels
            | Endpoint::VertexAnthropic { .. } => Dialect::Anthropic,
            Endpoint::Bedrock { .. } | Endpoint::Sts => Dialect::Aws,
            Endpoint::Gemini(_) | Endpoint::GeminiEmbed { .. } | Endpoint::GeminiModels => {
                Dialect::Google
            }
            _ => Dialect::OpenAi,
        }
    }

    fn method(&self) -> Method {
        match self {
            Endpoint::OpenAiModels | Endpoint::AnthropicModels | Endpoint::GeminiModels => {
                Method::GET
            }
            _ => Method::POST,
        }
    }

    /// The model a request names, from the path or the body, for `fault-` models.
    fn model(&self, body: &Bytes) -> String {
        match self {
            Endpoint::Gemini(t) => t.model.clone(),
            Endpoint::GeminiEmbed { model, .. } => model.clone(),
            Endpoint::Bedrock { model, .. } | Endpoint::VertexAnthropic { model, .. } => {
                model.clone()
            }
            Endpoint::AzureChat(d) | Endpoint::AzureEmbeddings(d) => d.clone(),
            _ => serde_json::from_slice::<Json>(body)
                .ok()
                .and_then(|v| v.get("model").and_then(Json::as_str).map(str::to_string))
                .unwrap_or_default(),
        }
    }
}

/// Guesses the dialect of a request no endpoint matched, for the shape of its 404.
fn guess_dialect(req: &SimRequest) -> Dialect {
    if req.headers.contains_key("anthropic-version") || req.headers.contains_key("x-api-key") {
        Dialect::Anthropic
    } else if req.headers.contains_key("x-goog-api-key") || req.path.contains("/v1beta") {
        Dialect::Google
    } else {
        Dialect::OpenAi
    }
}

fn has_credential(dialect: Dialect, req: &SimRequest) -> bool {
    let present = |name: &str| req.header(name).is_some_and(|v| !v.trim().is_empty());
    let bearer = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| !t.trim().is_empty());
    match dialect {
        Dialect::OpenAi => bearer || present("api-key"),
        Dialect::Anthropic => bearer || present("x-api-key"),
        Dialect::Google => {
            bearer
                || present("x-goog-api-key")
                || req.query_param("key").is_some_and(|k| !k.is_empty())
        }
        Dialect::Aws => {
            bearer
                || req
                    .header("authorization")
                    .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 "))
        }
    }
}

fn missing_credential_message(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::OpenAi => {
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        }
        Dialect::Anthropic => "x-api-key header is required",
        Dialect::Aws => "Missing Authentication Token",
        Dialect::Google => {
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."
        }
    }
}

fn dispatch(endpoint: &Endpoint, req: &SimRequest) -> Reply {
    match endpoint {
        Endpoint::Chat => openai::chat(req, None),
        Endpoint::Embeddings => openai::embeddings(req, None),
        Endpoint::Responses => responses::handle(req),
        Endpoint::OpenAiModels => openai::models(),
        Endpoint::AzureChat(d) => openai::chat(req, Some(d)),
        Endpoint::AzureEmbeddings(d) => openai::embeddings(req, Some(d)),
        Endpoint::Messages => anthropic::messages(req),
        Endpoint::CountTokens => anthropic::count_tokens(req),
        Endpoint::AnthropicModels => anthropic::models(),
        Endpoint::Gemini(t) => gemini::generate(req, t),
        Endpoint::GeminiEmbed { batch, .. } => gemini::embed(req, *batch),
        Endpoint::GeminiModels => gemini::models(),
        Endpoint::Bedrock { model, stream } => bedrock::converse(req, model, *stream),
        Endpoint::VertexAnthropic { model, stream } => vertex_anthropic(req, model, *stream),
        // Answered in `cloud_answer`, before faults.
        Endpoint::Sts | Endpoint::GoogleToken => Reply::error(
            Dialect::OpenAi,
            StatusCode::INTERNAL_SERVER_ERROR,
            "not dispatched",
        ),
    }
}

/// Claude on Vertex AI: the body carries `anthropic_version: vertex-2023-10-16` and no
/// `model` (it is in the path); otherwise it is Anthropic's Messages body.
fn vertex_anthropic(req: &SimRequest, model: &str, stream: bool) -> Reply {
    let mut body = match req.json_object(Dialect::Anthropic) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let bad = |m: &str| Reply::error(Dialect::Anthropic, StatusCode::BAD_REQUEST, m);
    if body.get("anthropic_version").and_then(Json::as_str) != Some("vertex-2023-10-16") {
        return bad("anthropic_version: Input should be 'vertex-2023-10-16'");
    }
    if model == "count-tokens" {
        // `.../models/count-tokens:rawPredict`: the model is in the body.
        if body.get("model").and_then(Json::as_str).is_none() {
            return bad("model: Field required");
        }
        if let Some(o) = body.as_object_mut() {
            o.remove("anthropic_version");
        }
        let mut inner = req.clone();
        inner.body = Bytes::from(body.to_string());
        return anthropic::count_tokens(&inner);
    }
    if body.get("model").is_some() {
        return bad("model: Extra inputs are not permitted");
    }
    if body.get("stream").and_then(Json::as_bool).unwrap_or(false) != stream {
        return bad("stream must match the method (streamRawPredict streams)");
    }
    if let Some(o) = body.as_object_mut() {
        o.remove("anthropic_version");
        o.insert("model".into(), json!(model));
    }
    let mut inner = req.clone();
    inner.body = Bytes::from(body.to_string());
    anthropic::messages(&inner)
}

/// Checks that come before faults: method, credentials, mandatory headers and parameters.
fn precheck(endpoint: &Endpoint, req: &SimRequest, require_auth: bool) -> Option<Reply> {
    let dialect = endpoint.dialect();
    if req.method != endpoint.method() {
        return Some(Reply::error(
            dialect,
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("Method {} not allowed on {}.", req.method, req.path),
        ));
    }
    let open = matches!(endpoint, Endpoint::Sts | Endpoint::GoogleToken);
    if require_auth && !open && !has_credential(dialect, req) {
        return Some(Reply::error(
            dialect,
            StatusCode::UNAUTHORIZED,
            missing_credential_message(dialect),
        ));
    }
    if matches!(endpoint, Endpoint::Messages | Endpoint::CountTokens)
        && req.header("anthropic-version").is_none()
    {
        return Some(Reply::error(
            dialect,
            StatusCode::BAD_REQUEST,
            "anthropic-version: header is required",
        ));
    }
    if matches!(
        endpoint,
        Endpoint::AzureChat(_) | Endpoint::AzureEmbeddings(_)
    ) && req.query_param("api-version").is_none_or(str::is_empty)
    {
        return Some(Reply::error(
            dialect,
            StatusCode::NOT_FOUND,
            "Resource not found",
        ));
    }
    None
}

async fn handle(state: Shared, req: Request<Incoming>) -> Result<Response<SimBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let status = if e.is::<http_body_util::LengthLimitError>() {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return Ok(json_response(
                status,
                &json!({"error": {"message": e.to_string()}}),
                Vec::new(),
            ));
        }
    };
    let sim_req = SimRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    };

    match (sim_req.method.as_str(), sim_req.path.as_str()) {
        ("GET", "/health") => {
            return Ok(json_response(
                StatusCode::OK,
                &json!({"status": "ok"}),
                Vec::new(),
            ));
        }
        ("GET", "/_sim/requests") => {
            let list = serde_json::to_value(state.recorder.list()).unwrap_or(Json::Null);
            return Ok(json_response(StatusCode::OK, &list, Vec::new()));
        }
        ("POST" | "DELETE", "/_sim/reset" | "/_sim/requests") => {
            state.reset();
            return Ok(json_response(
                StatusCode::OK,
                &json!({"reset": true}),
                Vec::new(),
            ));
        }
        _ => {}
    }

    let endpoint = Endpoint::route(&sim_req.path, &sim_req.headers);
    let seq = state
        .recorder
        .record(&sim_req, endpoint.as_ref().map(Endpoint::name));
    let (response, fault_spec) = answer(&state, endpoint, &sim_req).await;
    state
        .recorder
        .finish(seq, response.status().as_u16(), fault_spec.as_deref());
    Ok(response)
}

/// Everything after recording; returns the response and the fault spec applied.
async fn answer(
    state: &Shared,
    endpoint: Option<Endpoint>,
    req: &SimRequest,
) -> (Response<SimBody>, Option<String>) {
    let Some(endpoint) = endpoint else {
        let dialect = guess_dialect(req);
        let msg = format!(
            "Unknown request URL: {} {}. (provider simulator)",
            req.method, req.path
        );
        return (
            render(
                dialect,
                Reply::error(dialect, StatusCode::NOT_FOUND, &msg),
                &Faults::default(),
            ),
            None,
        );
    };
    let dialect = endpoint.dialect();
    if let Some(reply) = precheck(&endpoint, req, state.config.require_auth) {
        return (render(dialect, reply, &Faults::default()), None);
    }
    if let Some(resp) = cloud_answer(state, &endpoint, req) {
        return (resp, None);
    }
    let mut faults = match Faults::parse(&req.headers, &endpoint.model(&req.body)) {
        Ok(f) => f,
        Err(e) => {
            let reply = Reply::error(dialect, StatusCode::BAD_REQUEST, &e.to_string());
            return (render(dialect, reply, &Faults::default()), None);
        }
    };
    if !faults.is_empty() && !state.arm(&faults) {
        faults = faults.disarmed();
    }
    let spec = (!faults.is_empty()).then(|| faults.spec.clone());
    if let Some(delay) = faults.delay {
        tokio::time::sleep(delay).await;
    }
    let mut status = faults.status;
    let is_stream_reply;
    let reply = if let Some(s) = status.take() {
        is_stream_reply = false;
        let mut reply = Reply::error(dialect, s, &fault::injected_message(s));
        if s == StatusCode::TOO_MANY_REQUESTS
            && let Reply::Json { headers, .. } = &mut reply
        {
            headers.push((RETRY_AFTER, HeaderValue::from(faults.retry_after_secs)));
            if let Ok(v) = HeaderValue::from_str(&(faults.retry_after_secs * 1000).to_string()) {
                headers.push((http::HeaderName::from_static("retry-after-ms"), v));
            }
        }
        reply
    } else {
        let reply = dispatch(&endpoint, req);
        is_stream_reply = matches!(reply, Reply::Stream(_));
        reply
    };
    // A mid-stream error cannot happen before a body exists: answer plain requests with 500.
    let reply = if !is_stream_reply
        && faults.body == Some(BodyFault::MidstreamError)
        && reply.status().is_success()
    {
        Reply::error(
            dialect,
            StatusCode::INTERNAL_SERVER_ERROR,
            &fault::injected_message(StatusCode::INTERNAL_SERVER_ERROR),
        )
    } else {
        reply
    };
    (render(dialect, reply, &faults), spec)
}

/// The cloud checks and endpoints: SigV4 on Bedrock, issued tokens on Vertex AI (paths under
/// `/v1/projects/`), STS and the token endpoint themselves.
fn cloud_answer(
    state: &Shared,
    endpoint: &Endpoint,
    req: &SimRequest,
) -> Option<Response<SimBody>> {
    let none = Faults::default();
    match endpoint {
        Endpoint::Sts => Some(match state.keys.assume_role_with_web_identity(req) {
            Ok(xml) => {
                let mut r = Response::new(
                    Full::new(Bytes::from(xml))
                        .map_err(|never| match never {})
                        .boxed(),
                );
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
                r
            }
            Err(m) => render(
                Dialect::Aws,
                Reply::aws_error(StatusCode::BAD_REQUEST, "InvalidParameterValue", &m),
                &none,
            ),
        }),
        Endpoint::GoogleToken => Some(match state.keys.google_token(req) {
            Ok(v) => json_response(StatusCode::OK, &v, Vec::new()),
            Err(m) => json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": "invalid_grant", "error_description": m}),
                Vec::new(),
            ),
        }),
        Endpoint::Bedrock { .. } if state.config.require_auth => {
            let auth = req.header("authorization").unwrap_or_default();
            if auth.starts_with("Bearer ") {
                return None;
            }
            let (kind, msg) = state.keys.verify_sigv4(req).err()?;
            let status = if kind.starts_with("Incomplete") {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::FORBIDDEN
            };
            Some(render(
                Dialect::Aws,
                Reply::aws_error(status, kind, &msg),
                &none,
            ))
        }
        _ if state.config.require_auth
            && req.path.starts_with("/v1/projects/")
            && !state.keys.google_token_valid(req) =>
        {
            let msg = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.";
            Some(render(
                Dialect::Google,
                Reply::error(Dialect::Google, StatusCode::UNAUTHORIZED, msg),
                &none,
            ))
        }
        _ => None,
    }
}

fn request_id_header(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::OpenAi => "x-request-id",
        Dialect::Anthropic => "request-id",
        Dialect::Google => "x-goog-request-id",
        Dialect::Aws => "x-amzn-requestid",
    }
}

/// Turns a reply into a response, applying body faults and pacing.
fn render(dialect: Dialect, reply: Reply, faults: &Faults) -> Response<SimBody> {
    let rid = (
        http::HeaderName::from_static(request_id_header(dialect)),
        HeaderValue::from_static("req_sim"),
    );
    match reply {
        Reply::Json {
            status,
            mut headers,
            body,
        } => {
            headers.push(rid);
            if !status.is_success() || faults.body.is_none() {
                return json_response(status, &body, headers);
            }
            // Body faults on a plain JSON answer: cut the document in two "events".
            let bytes = Bytes::from(body.to_string());
            let mid = bytes.len() / 2;
            let events = vec![bytes.slice(..mid), bytes.slice(mid..)];
            let malformed = Bytes::from_static(br#"{"id": "broken"#);
            let body = if faults.body == Some(BodyFault::Malformed) {
                stream::drive(
                    vec![malformed],
                    Bytes::new(),
                    Bytes::new(),
                    &faults.disarmed(),
                )
            } else {
                stream::drive(events, Bytes::new(), malformed, faults)
            };
            let mut resp = Response::new(body.boxed());
            *resp.status_mut() = status;
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            for (k, v) in headers {
                resp.headers_mut().append(k, v);
            }
            resp
        }
        Reply::Stream(s) => {
            let body = stream::drive(
                s.events.clone(),
                s.error_event(),
                s.malformed_event(),
                faults,
            );
            let mut resp = Response::new(body.boxed());
            let h = resp.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(s.content_type));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(rid.0, rid.1);
            resp
        }
    }
}

fn json_response(
    status: StatusCode,
    body: &Json,
    headers: Vec<(http::HeaderName, HeaderValue)>,
) -> Response<SimBody> {
    let bytes = Bytes::from(body.to_string());
    let mut resp = Response::new(Full::new(bytes).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in headers {
        resp.headers_mut().append(k, v);
    }
    resp
}
