//! The upstream phase for LLM backends. `handle` (route backend `ai:`) and `handle_models` (the
//! `llm:` shorthand) read the client's body; `forward` then runs the same named steps over one
//! per-request `Exchange`:
//!
//! ```text
//! parse              backend and operation into the log; translation plan; JSON body checked,
//!   │                observed (model, parameters, prompt) and shaped (aliases, overrides)
//! guard_request      prompt guards over the client's text (guard::request): mask or reject
//!   │
//! translate_request  the body in the provider's format (llm::translate)
//!   │
//! provider_request   path, the client's headers with the backend's credential injected,
//!   │                trace context, body bytes
//! call_upstream      send, bounded by the route's timeout; timing and socket cookie into the log
//!   │
//! respond            provider error, SSE stream or JSON body: observed, response guards
//!                    (guard::response, or guard::stream per event), translated back
//! ```
//!
//! Request checks that need the parsed body and model (guardrails, rate limits) belong between
//! `parse` and `translate_request`; retries and failover wrap `provider_request` and
//! `call_upstream`. Each step returns a `ProxyError`; `forward` answers it in the client's
//! format.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::Proxy;
use super::error::ProxyError;
use super::http_backend::{apply_modifier, read_limited};
use super::steer::{self, Candidate, Next, Targets};
use super::upstream::{self, HttpClient};
use crate::body::Body;
use crate::cloud::{CloudAuth, Credential};
use crate::config::Snapshot;
use crate::config::snapshot::{AiBackend, BackendAuth, ModelTable, Policies};
use crate::ctx::{LlmInfo, RequestLog};
use crate::llm::provider::{CREDENTIAL_HEADERS, Provider, Wire, client_credential};
use crate::llm::stream::SseTransform;
use crate::llm::translate::{chat_anthropic, chat_bedrock, chat_gemini, messages_chat};
use crate::llm::{RouteType, anthropic, gemini, observe_request};
use crate::telemetry::Capture;

mod respond;
pub use respond::COST_HEADER;

type LlmResult = Result<(Response<Body>, Option<SseTransform>), (ProxyError, Wire)>;

/// How a request travels: unchanged, or translated from the client's format to the provider's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Same,
    ChatToAnthropic,
    ChatToGemini,
    MessagesToChat,
    MessagesToGemini,
    EmbeddingsToGemini,
}

/// The plan for a `route` request to `provider`, which takes it in `wire`.
fn plan(
    route: RouteType,
    provider: &Provider,
    wire: Wire,
) -> Result<(Plan, RouteType), ProxyError> {
    use RouteType::*;
    let cloud = matches!(provider, Provider::Bedrock { .. } | Provider::Vertex { .. });
    if cloud && matches!(route, Models | Passthrough | Embeddings | Responses) {
        return Err(ProxyError::Unsupported(format!(
            "{} requests are not supported by provider {}",
            route.operation(),
            provider.name()
        )));
    }
    Ok(match (route, wire) {
        (Completions, Wire::OpenAi) | (Messages, Wire::Anthropic) => (Plan::Same, route),
        (Completions, Wire::Anthropic) => (Plan::ChatToAnthropic, Messages),
        (Completions, Wire::Gemini) => (Plan::ChatToGemini, Completions),
        (Messages, Wire::OpenAi) => (Plan::MessagesToChat, Completions),
        (Messages, Wire::Gemini) => (Plan::MessagesToGemini, Completions),
        (CountTokens, Wire::Anthropic)
        | (GenerateContent, Wire::Gemini)
        | (Models, _)
        | (Passthrough, _) => (Plan::Same, route),
        (Responses | Embeddings, Wire::OpenAi) => (Plan::Same, route),
        (Embeddings, Wire::Gemini) => (Plan::EmbeddingsToGemini, Embeddings),
        (r, _) => {
            return Err(ProxyError::Unsupported(format!(
                "{} requests are not supported by provider {}",
                r.operation(),
                provider.name()
            )));
        }
    })
}

fn route_type_for(policies: &Policies, path: &str) -> RouteType {
    if let Some(ai) = &policies.ai
        && let Some((_, rt)) = ai
            .routes
            .iter()
            .find(|(suffix, _)| path.trim_end_matches('/').ends_with(suffix.as_str()))
    {
        return *rt;
    }
    RouteType::detect(path)
}

fn llm(log: &mut RequestLog) -> &mut LlmInfo {
    log.llm.get_or_insert_with(LlmInfo::default)
}

/// Route backend `ai:` (`targets`: the chosen backend, then the route's other `ai` backends for
/// retries).
pub(super) async fn handle(
    px: &Proxy,
    targets: Targets<'_>,
    policies: &Policies,
    req: Request<Incoming>,
    log: &mut RequestLog,
    snap: &Snapshot,
) -> LlmResult {
    let route = route_type_for(policies, req.uri().path());
    let wire = route.client_wire();
    let (parts, body) = req.into_parts();
    let bytes = read_limited(body, snap.global.limits.max_request_body, false)
        .await
        .map_err(|e| (e, wire))?;
    let client = ClientRequest {
        parts,
        bytes,
        json: None,
    };
    forward(px, targets, policies, client, route, log, snap).await
}

/// The `llm:` shorthand: the request's model picks the provider, or a virtual model plans the
/// targets.
pub(super) async fn handle_models(
    px: &Proxy,
    table: &ModelTable,
    policies: &Policies,
    req: Request<Incoming>,
    log: &mut RequestLog,
    snap: &Snapshot,
) -> LlmResult {
    let route = route_type_for(policies, req.uri().path());
    let wire = route.client_wire();
    if route == RouteType::Models {
        return Ok((model_list(table), None));
    }
    let (parts, body) = req.into_parts();
    let bytes = read_limited(body, snap.global.limits.max_request_body, false)
        .await
        .map_err(|e| (e, wire))?;
    let json = serde_json::from_slice::<Value>(&bytes).ok();
    let model = json
        .as_ref()
        .and_then(|v| v.get("model").and_then(Value::as_str))
        .unwrap_or_default();
    let Some(targets) = Targets::for_model(table, model, json.as_ref(), log) else {
        if json.is_none() {
            return Err((
                ProxyError::BadRequest("request body is not valid JSON".into()),
                wire,
            ));
        }
        let e = ProxyError::NoRoute {
            method: parts.method.to_string(),
            path: format!("{} (model {model:?} is not configured)", parts.uri.path()),
        };
        return Err((e, wire));
    };
    let client = ClientRequest { parts, bytes, json };
    forward(px, targets, policies, client, route, log, snap).await
}

/// The client's request as `forward` holds it: the head, the body's bytes, and the body
/// already parsed when the `llm:` shorthand read its model from it (the first attempt takes
/// it instead of parsing again).
struct ClientRequest {
    parts: http::request::Parts,
    bytes: Bytes,
    json: Option<Value>,
}

/// `GET /v1/models` of the `llm:` shorthand: the public models and the virtual ones.
fn model_list(table: &ModelTable) -> Response<Body> {
    let mut data: Vec<Value> = table
        .entries
        .iter()
        .filter(|m| !m.pattern.contains('*') && !m.internal)
        .map(|m| json!({"id": m.pattern, "object": "model", "created": 0, "owned_by": m.backend.provider.name()}))
        .collect();
    data.extend(
        table
            .virtual_models
            .iter()
            .map(|v| json!({"id": v.name, "object": "model", "created": 0, "owned_by": "gateway"})),
    );
    super::simple(StatusCode::OK, json!({"object": "list", "data": data}))
}

/// Applies aliases, defaults, overrides and the backend's model to the client body. Returns
/// whether a field other than `model` changed, and whether `model` was set to another value
/// (an unchanged body is forwarded as the client's own bytes).
fn shape_request(body: &mut Value, ai: &AiBackend, policies: &Policies) -> (bool, bool) {
    let Some(obj) = body.as_object_mut() else {
        return (false, false);
    };
    let (mut others, mut model) = (false, false);
    let mut set = |obj: &mut serde_json::Map<String, Value>, k: &str, v: Value| {
        if obj.get(k) != Some(&v) {
            obj.insert(k.to_owned(), v);
            if k == "model" {
                model = true;
            } else {
                others = true;
            }
        }
    };
    if let Some(p) = &policies.ai {
        if let Some(m) = obj.get("model").and_then(Value::as_str)
            && let Some((_, to)) = p.model_aliases.iter().find(|(from, _)| from == m)
        {
            set(obj, "model", json!(to));
        }
        for (k, v) in &p.defaults {
            if !obj.contains_key(k) {
                set(obj, k, v.clone());
            }
        }
        for (k, v) in &p.overrides {
            set(obj, k, v.clone());
        }
    }
    for (k, v) in &ai.defaults {
        if !obj.contains_key(k) {
            set(obj, k, v.clone());
        }
    }
    for (k, v) in &ai.overrides {
        set(obj, k, v.clone());
    }
    if let Some(prefix) = &ai.strip_model_prefix
        && let Some(m) = obj.get("model").and_then(Value::as_str)
        && let Some(stripped) = m.strip_prefix(prefix.as_str())
    {
        let s = stripped.to_owned();
        set(obj, "model", json!(s));
    }
    if let Some(m) = &ai.model_override {
        set(obj, "model", json!(m));
    }
    (others, model)
}

/// The upstream phase of one LLM request, as the steps in the module doc. Every step returns
/// a `ProxyError`; here it is paired with the client's format, in which it is answered.
#[allow(clippy::too_many_arguments)]
async fn forward(
    px: &Proxy,
    targets: Targets<'_>,
    policies: &Policies,
    mut client: ClientRequest,
    route: RouteType,
    log: &mut RequestLog,
    snap: &Snapshot,
) -> LlmResult {
    let body_len = client.bytes.len();
    let mut parsed = client.json.take();
    let client = &client;
    let steps = async {
        let attempts = targets.attempts(policies, log);
        let mut n = 0;
        loop {
            let cand = &targets.list[attempts.target_of(n)];
            let own = cand.policies.unwrap_or(policies);
            let mut x = Exchange::parse(px, cand, own, client, parsed.take(), route, log)?;
            if n == 0 {
                let asked = targets.virtual_model.map_or(x.model.as_str(), |v| &v.name);
                check_model(asked, log)?;
                super::limits::llm_phase(px, policies, body_len, log).await?;
            }
            x.guard_request(px, log).await?;
            x.translate_request()?;
            let cred = x.cloud_credential().await?;
            let req = x.provider_request(px, log, cred)?;
            let sent = x
                .call_upstream(&px.client_for(&cand.ai.upstream), req, log)
                .await;
            let more = n + 1 < attempts.budget;
            match steer::judge(cand, sent, &attempts, more, log) {
                Next::Retry(why) => {
                    steer::abandon(cand, why, log);
                    n += 1;
                    if let Some(b) = attempts.backoff() {
                        tokio::time::sleep(b).await;
                    }
                }
                Next::Respond(resp) => {
                    steer::finish(&targets, cand, n, log);
                    let mut answer = x.respond(px, resp, log, snap).await?;
                    steer::headers(log, answer.0.headers_mut());
                    return Ok(answer);
                }
                Next::Fail(e) => {
                    steer::finish(&targets, cand, n, log);
                    return Err(e);
                }
            }
        }
    };
    steps.await.map_err(|e| (e, route.client_wire()))
}

/// The caller's API key may be limited to some models (`allowedModels`).
fn check_model(model: &str, log: &RequestLog) -> Result<(), ProxyError> {
    match log
        .identity
        .as_ref()
        .and_then(|i| i.allowed_models.as_ref())
    {
        Some(allowed) if !crate::auth::model_allowed(allowed, model) => {
            Err(ProxyError::ModelNotAllowed(model.to_owned()))
        }
        _ => Ok(()),
    }
}

/// A response for the client, with the SSE transform its body runs through when it streams.
type Answer = (Response<Body>, Option<SseTransform>);

/// One LLM request on its way through the steps of `forward`: what `parse` and
/// `translate_request` decided, read by the steps after them.
struct Exchange<'a> {
    ai: &'a AiBackend,
    policies: &'a Policies,
    /// Which optional request data telemetry needs (prompt, completion).
    capture: Capture,
    /// The client's operation; its `client_wire()` is the format the client expects.
    route: RouteType,
    /// How the request travels, and the provider operation it becomes.
    plan: Plan,
    /// The format the provider takes this request in (Bedrock's: OpenAI chat, translated to
    /// and from Converse at the edge; Vertex AI's: by model).
    wire: Wire,
    up_route: RouteType,
    /// The client's request line and headers.
    parts: &'a http::request::Parts,
    /// The client's body. Sent as is when `body` is `None`, or when the plan is `Same` and
    /// nothing was `reshaped`; taken by `provider_request`.
    bytes: Bytes,
    /// Whether a body goes upstream (then always as a POST).
    has_body: bool,
    /// The JSON body: shaped by `parse` (aliases, defaults, overrides), in the provider's
    /// format after `translate_request`. `None` without a body, for models and passthrough.
    body: Option<Value>,
    /// Whether the body sent upstream differs from the client's bytes.
    reshaped: bool,
    /// The client asked for a stream (body `stream`, or Gemini's streaming method).
    streaming: bool,
    /// The model after aliases and overrides; empty when the body names none.
    model: String,
    /// A streaming chat request for which the gateway asked for the usage chunk itself: the
    /// stream handler takes the counts and drops the chunk.
    strip_usage: bool,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    include_usage_for_client: bool,
    /// Prompt guards: the route's `policies.ai.promptGuard`, else the `llm:` model's.
    guard: Option<std::sync::Arc<crate::guard::PromptGuard>>,
}

// === impl Exchange ===

impl<'a> Exchange<'a> {
    /// Step 1: backend and operation into the log; the translation plan; the client's body
    /// parsed, observed (model, parameters, prompt) and shaped by the route's and backend's
    /// aliases, defaults and overrides.
    fn parse(
        px: &Proxy,
        cand: &Candidate<'a>,
        policies: &'a Policies,
        client: &'a ClientRequest,
        parsed: Option<Value>,
        route: RouteType,
        log: &mut RequestLog,
    ) -> Result<Self, ProxyError> {
        let (parts, bytes) = (&client.parts, client.bytes.clone());
        let ai = cand.ai;
        let capture = px.telemetry.capture();
        log.backend = Some(ai.name.clone());
        log.endpoint = Some(ai.upstream.authority.clone());
        let info = llm(log);
        info.provider = ai.provider.name().to_owned();
        info.operation = route.operation();

        if bytes.is_empty() && parts.method == http::Method::POST && route.needs_body() {
            // Forwarding it would only earn the client the provider's own, less clear, error.
            return Err(ProxyError::BadRequest(format!(
                "{} requests need a JSON body; the request body is empty",
                route.operation()
            )));
        }
        let has_body = !bytes.is_empty() && !matches!(route, RouteType::Models);
        let mut body: Option<Value> = None;
        let mut reshaped = false;
        if has_body && route != RouteType::Passthrough {
            let mut v: Value = match parsed {
                Some(v) => v,
                None => serde_json::from_slice(&bytes).map_err(|e| {
                    ProxyError::BadRequest(format!("request body is not valid JSON: {e}"))
                })?,
            };
            if !v.is_object() {
                return Err(ProxyError::BadRequest(
                    "request body must be a JSON object".into(),
                ));
            }
            observe_request(route, &v, llm(log), capture.prompt);
            if route == RouteType::GenerateContent
                && let Some((m, stream)) = gemini::path_model(parts.uri.path())
            {
                let info = llm(log);
                info.request_model = Some(m);
                info.streaming = stream;
            }
            // A virtual model's target is the model the entry's own shaping starts from; set
            // there and back by the entry's own `model` it is no change, so only then is the
            // client's model kept to compare with.
            let client_model = cand.model.and_then(|_| v.get("model").cloned());
            if let Some(target) = cand.model {
                v["model"] = json!(target);
            }
            let (others, model_set) = shape_request(&mut v, ai, policies);
            reshaped |= others
                || match cand.model {
                    Some(_) => v.get("model") != client_model.as_ref(),
                    None => model_set,
                };
            body = Some(v);
        }
        let streaming = llm(log).streaming;
        let model = body
            .as_ref()
            .and_then(|b| b.get("model").and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned();
        let wire = match (&model[..], route) {
            ("", RouteType::GenerateContent) => {
                let path_model = gemini::path_model(parts.uri.path()).map(|(m, _)| m);
                let m = ai.model_override.clone().or(path_model).unwrap_or_default();
                ai.provider.wire(&m)
            }
            (m, _) => ai.provider.wire(m),
        };
        let (plan, up_route) = plan(route, &ai.provider, wire)?;
        Ok(Exchange {
            ai,
            policies,
            capture,
            route,
            plan,
            wire,
            up_route,
            parts,
            bytes,
            has_body,
            body,
            reshaped,
            streaming,
            model,
            strip_usage: false,
            include_usage_for_client: false,
            guard: policies
                .ai
                .as_ref()
                .and_then(|p| p.prompt_guard.clone())
                .or_else(|| ai.prompt_guard.clone()),
        })
    }

    /// Step 2: the request guards over the client's text. A mask edits the body (which is
    /// then re-serialised, and re-observed when prompts are recorded); a reject ends here.
    async fn guard_request(&mut self, px: &Proxy, log: &mut RequestLog) -> Result<(), ProxyError> {
        let Some(pg) = self.guard.clone() else {
            return Ok(());
        };
        let Some(body) = self.body.as_mut() else {
            return Ok(());
        };
        if pg.request.is_empty() {
            return Ok(());
        }
        let mut info = log.guard.take().unwrap_or_default();
        let remote = crate::guard::request::Remote {
            transport: px,
            log,
            headers: &self.parts.headers,
        };
        let result = crate::guard::request::check(&pg, self.route, body, &remote, &mut info).await;
        log.guard = Some(info);
        match result {
            Ok(false) => Ok(()),
            Ok(true) => {
                self.reshaped = true;
                if self.capture.prompt
                    && let Some(b) = &self.body
                {
                    llm(log).prompt = crate::llm::prompt_of(self.route, b);
                }
                Ok(())
            }
            Err(r) => Err(ProxyError::Guarded(Box::new((r, false)))),
        }
    }

    /// Step 3: the body in the provider's format, per the plan (then Bedrock's Converse, or
    /// Vertex AI's Anthropic body). Refused when the provider cannot take what was asked.
    fn translate_request(&mut self) -> Result<(), ProxyError> {
        let Some(mut b) = self.body.take() else {
            return Ok(());
        };
        // Whether the client asked for the usage chunk itself (read before the body changes).
        self.include_usage_for_client = self.streaming
            && b.pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true);
        let mut up = match self.plan {
            Plan::Same => {
                if self.route == RouteType::Completions
                    && self.streaming
                    && !self.include_usage_for_client
                {
                    // Usage only comes in a final chunk the client did not ask for: ask for
                    // it, and have the stream handler drop it again.
                    self.strip_usage = true;
                    self.reshaped = true;
                    match b.get_mut("stream_options").and_then(Value::as_object_mut) {
                        Some(o) => {
                            o.insert("include_usage".into(), json!(true));
                        }
                        None => {
                            b["stream_options"] = json!({"include_usage": true});
                        }
                    }
                }
                b
            }
            Plan::ChatToAnthropic => chat_anthropic::request(&b),
            Plan::ChatToGemini => chat_gemini::request(&b),
            Plan::MessagesToChat => messages_chat::request(
                &b,
                matches!(self.ai.provider, Provider::OpenAi | Provider::Azure { .. }),
            ),
            Plan::MessagesToGemini => chat_gemini::request(&messages_chat::request(&b, false)),
            Plan::EmbeddingsToGemini => chat_gemini::embeddings_request(&b),
        };
        if self.wire == Wire::Gemini && self.plan != Plan::Same {
            // Gemini takes the model in the path and streaming from the method name.
            if let Some(o) = up.as_object_mut() {
                o.remove("model");
                o.remove("stream");
            }
        }
        match &self.ai.provider {
            Provider::Bedrock { guardrail, .. } => {
                up = chat_bedrock::request(&up).map_err(ProxyError::BadRequest)?;
                if let Some((id, version)) = guardrail {
                    up["guardrailConfig"] =
                        json!({"guardrailIdentifier": id, "guardrailVersion": version});
                }
                self.reshaped = true;
            }
            Provider::Vertex { .. } if self.wire == Wire::Anthropic => {
                // Vertex takes the model in the path (count_tokens: in the body, its path names
                // no model) and the API version in the body.
                if let Some(o) = up.as_object_mut() {
                    if self.up_route != RouteType::CountTokens {
                        o.remove("model");
                    }
                    o.insert("anthropic_version".into(), json!(anthropic::VERTEX_VERSION));
                }
                self.reshaped = true;
            }
            _ => {}
        }
        self.body = Some(up);
        Ok(())
    }

    /// Bedrock's and Vertex AI's credential for this request (`backendAuth.aws` / `gcp`, else
    /// the ambient sources when the backend has no key), fetched or cached.
    async fn cloud_credential(&self) -> Result<Option<(CloudAuth, Credential)>, ProxyError> {
        let auth = match &self.policies.backend_auth {
            Some(BackendAuth::Cloud(c)) => c,
            Some(_) => return Ok(None),
            None => match &self.ai.cloud {
                Some(c) if self.ai.api_key.is_none() => c,
                _ => return Ok(None),
            },
        };
        match auth.credential().await {
            Ok(cred) => Ok(Some((auth.clone(), cred))),
            Err(e) => Err(ProxyError::Credentials(format!(
                "backend {}: {e}",
                self.ai.name
            ))),
        }
    }

    /// Step 4: the provider request: path, the client's headers with the backend's credential
    /// injected (`upstream_headers`), trace context, and the body.
    fn provider_request(
        &mut self,
        px: &Proxy,
        log: &mut RequestLog,
        cred: Option<(CloudAuth, Credential)>,
    ) -> Result<Request<Body>, ProxyError> {
        let ai = self.ai;
        let uri: http::Uri = format!(
            "{}://{}{}",
            ai.upstream.scheme(),
            ai.upstream.authority,
            self.upstream_path()
        )
        .parse()
        .map_err(|e| ProxyError::Internal(format!("upstream URI: {e}")))?;
        let method = if self.has_body {
            http::Method::POST
        } else {
            self.parts.method.clone()
        };
        let mut builder = Request::builder().method(method).uri(uri);
        let headers = builder
            .headers_mut()
            .ok_or_else(|| ProxyError::Internal("request builder".into()))?;
        upstream_headers(&self.parts.headers, headers, self, cred.is_some());
        px.telemetry.inject_upstream(log, headers);
        let bytes = std::mem::take(&mut self.bytes);
        let out_bytes = match &self.body {
            // Same format and nothing changed: the client's own bytes, not a re-serialisation.
            Some(_) if self.plan == Plan::Same && !self.reshaped => bytes,
            Some(v) => {
                Bytes::from(serde_json::to_vec(v).map_err(|e| ProxyError::Internal(e.to_string()))?)
            }
            None => bytes,
        };
        let mut req = builder
            .body(crate::body::full(out_bytes.clone()))
            .map_err(|e| ProxyError::Internal(e.to_string()))?;
        if let Some((auth, cred)) = cred {
            let region = match &ai.provider {
                Provider::Bedrock { region, .. } => Some(region.as_str()),
                _ => None,
            };
            auth.apply(&cred, &mut req, &out_bytes, region)
                .map_err(|e| ProxyError::Credentials(format!("backend {}: {e}", ai.name)))?;
        }
        Ok(req)
    }

    /// Path and query of the provider request.
    fn upstream_path(&self) -> String {
        let ai = self.ai;
        match (&ai.path_override, self.plan, self.route) {
            (Some(p), _, _) => p.clone(),
            (None, Plan::Same, RouteType::GenerateContent) => {
                // Keep the method and query; re-root under the provider's base path and apply
                // the backend's model, whatever prefix the route matched on.
                let pq = self
                    .parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("");
                let (path, query) = pq.split_once('?').map_or((pq, None), |(p, q)| (p, Some(q)));
                let (_, method) = path.rsplit_once(':').unwrap_or((path, "generateContent"));
                let model = ai
                    .model_override
                    .clone()
                    .or_else(|| gemini::path_model(path).map(|(m, _)| m))
                    .unwrap_or_default();
                let base = ai.provider.gemini_base(ai.path_prefix.as_deref());
                let q = query.map(|q| format!("?{q}")).unwrap_or_default();
                format!("{base}/models/{model}:{method}{q}")
            }
            (None, Plan::Same, RouteType::Passthrough) => self
                .parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            (None, _, _) => ai.provider.path(
                self.up_route,
                &self.model,
                self.streaming,
                ai.path_prefix.as_deref(),
            ),
        }
    }

    /// Step 5: the call, bounded by the route's timeout; its timing and the upstream
    /// connection's socket cookie (for the kernel flow record) go into the log.
    async fn call_upstream(
        &self,
        client: &HttpClient,
        req: Request<Body>,
        log: &mut RequestLog,
    ) -> Result<Response<Incoming>, ProxyError> {
        log.upstream_start = Some(std::time::Instant::now());
        let timeout = self
            .policies
            .backend_request_timeout
            .or(self.policies.request_timeout);
        let sent = upstream::send(client, req, &self.ai.upstream.authority, timeout).await;
        log.upstream_end = Some(std::time::Instant::now());
        let resp = sent?;
        log.upstream_cookie = resp
            .extensions()
            .get::<crate::ebpf::UpstreamCookie>()
            .map(|c| c.0);
        Ok(resp)
    }
}

/// Builds the provider request headers from the client's: credentials replaced per
/// `backendAuth`, the provider's own auth header, and identity encoding so bodies can be read.
/// `signed`: a cloud credential is applied after (then no key goes in here).
fn upstream_headers(client: &HeaderMap, out: &mut HeaderMap, x: &Exchange<'_>, signed: bool) {
    let (ai, policies) = (x.ai, x.policies);
    upstream::copy_headers(client, out);
    for h in [
        http::header::HOST,
        CONTENT_LENGTH,
        http::header::ACCEPT_ENCODING,
    ] {
        out.remove(h);
    }
    let credential = match (&policies.backend_auth, &ai.api_key) {
        _ if signed => None,
        (Some(BackendAuth::Key(k)), _) => Some(k.expose().to_owned()),
        (Some(BackendAuth::Passthrough), _) => client_credential(client),
        (Some(BackendAuth::Cloud(_)), _) => None,
        (None, Some(k)) => Some(k.expose().to_owned()),
        (None, None) => client_credential(client),
    };
    for h in CREDENTIAL_HEADERS {
        out.remove(*h);
    }
    if let Some(c) = credential
        && let Some((name, value)) = ai.provider.auth_header(&c)
    {
        out.insert(name, value);
    }
    let vertex = matches!(ai.provider, Provider::Vertex { .. });
    if x.plan != Plan::Same || ai.provider.is_bedrock() || vertex {
        // Headers of the client's SDK that mean nothing (or something else) to this provider.
        out.remove("anthropic-version");
        out.remove("openai-organization");
        out.remove("openai-project");
        if x.plan != Plan::Same || ai.provider.is_bedrock() {
            out.remove("anthropic-beta");
        }
    }
    if x.wire == Wire::Anthropic && !vertex && !out.contains_key("anthropic-version") {
        out.insert(
            "anthropic-version",
            HeaderValue::from_static(anthropic::DEFAULT_VERSION),
        );
    }
    out.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out.insert(
        http::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    if let Some(m) = &policies.request_headers {
        apply_modifier(m, out);
    }
}
