//! Step 6 of `forward`: the provider's answer in the client's format (error, stream or JSON
//! body), observed, guarded and translated.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use super::{Answer, Exchange, Plan, llm};
use crate::body::Body;
use crate::config::Snapshot;
use crate::ctx::{Blame, LlmInfo, RequestLog};
use crate::llm::provider::Wire;
use crate::llm::stream::{SseTransform, StreamHandler};
use crate::llm::translate::{self, chat_anthropic, chat_bedrock, chat_gemini, messages_chat};
use crate::llm::{RouteType, anthropic, gemini, openai};
use crate::proxy::Proxy;
use crate::proxy::error::ProxyError;
use crate::proxy::http_backend::read_upstream;
use crate::proxy::upstream;

/// Content type of AWS event-stream bodies (Bedrock's ConverseStream).
const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

impl Exchange<'_> {
    /// Step 6: the provider's answer in the client's format: an error, a stream (translated
    /// and observed event by event as it passes), or a JSON body (observed and translated).
    pub(super) async fn respond(
        &self,
        px: &Proxy,
        resp: Response<Incoming>,
        log: &mut RequestLog,
        snap: &Snapshot,
    ) -> Result<Answer, ProxyError> {
        let status = resp.status();
        let (rparts, rbody) = resp.into_parts();
        let mut out_headers = HeaderMap::new();
        upstream::copy_headers(&rparts.headers, &mut out_headers);
        out_headers.remove(CONTENT_LENGTH);
        out_headers.remove(http::header::CONTENT_ENCODING);

        if !status.is_success() {
            let resp = self
                .error_response(status, out_headers, rbody, log, snap)
                .await?;
            return Ok((resp, None));
        }
        let is_sse = rparts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| {
                c.starts_with("text/event-stream")
                    || (self.ai.provider.is_bedrock() && c.starts_with(EVENT_STREAM))
            });
        if self.streaming && is_sse {
            return Ok(self.stream_response(px, status, out_headers, rbody, log));
        }
        let resp = self
            .json_response(px, status, out_headers, rbody, log, snap)
            .await?;
        Ok((resp, None))
    }

    /// The provider refused or failed: its error, in the client's format when that differs.
    async fn error_response(
        &self,
        status: StatusCode,
        out_headers: HeaderMap,
        rbody: Incoming,
        log: &mut RequestLog,
        snap: &Snapshot,
    ) -> Result<Response<Body>, ProxyError> {
        let raw = read_upstream(
            rbody,
            snap.global.limits.max_response_body,
            snap.global.limits.stream_idle_timeout,
        )
        .await?;
        log.error = Some(format!(
            "upstream returned {status}: {}",
            translate::error_message(&raw).unwrap_or_default()
        ));
        log.blame = Some(if status.is_client_error() {
            Blame::Client
        } else {
            Blame::Upstream
        });
        // Bedrock's errors always, others when the client speaks another format: rebuilt in
        // the client's shape; otherwise the provider's own body and headers.
        let translated = if self.ai.provider.is_bedrock() {
            let kind = out_headers
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok());
            Some(chat_bedrock::error_body(
                self.route.client_wire(),
                status,
                kind,
                &raw,
            ))
        } else if self.plan == Plan::Same {
            None
        } else {
            Some(translate::error_body(
                self.route.client_wire(),
                self.wire,
                status,
                &raw,
            ))
        };
        let mut resp = match translated {
            Some(v) => {
                let mut r = crate::proxy::simple(status, v);
                copy_safe(&out_headers, r.headers_mut());
                r
            }
            None => {
                let mut r = Response::new(crate::body::full(raw));
                *r.headers_mut() = out_headers;
                r
            }
        };
        *resp.status_mut() = status;
        Ok(resp)
    }

    /// A stream: the body is forwarded event by event through the plan's stream handler.
    fn stream_response(
        &self,
        px: &Proxy,
        status: StatusCode,
        mut out_headers: HeaderMap,
        rbody: Incoming,
        log: &RequestLog,
    ) -> Answer {
        let mut transform =
            SseTransform::new(self.stream_handler(), log.start, self.capture.completion);
        if self.ai.provider.is_bedrock() {
            // ConverseStream's event-stream frames become OpenAI chat chunks before the
            // guards and the handler read them.
            let edge = chat_bedrock::Stream::new(&self.model, true);
            transform = transform.with_adapter(Box::new(edge));
        }
        if let Some(pg) = &self.guard
            && let Some(g) = crate::guard::stream::StreamGuard::new(
                pg,
                self.wire,
                self.up_route == RouteType::Responses,
                self.route,
                self.stream_webhooks(px, pg, log),
            )
        {
            transform = transform.with_filter(Box::new(g));
        }
        out_headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        out_headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        let mut resp = Response::new(rbody.map_err(Into::into).boxed_unsync());
        *resp.status_mut() = status;
        *resp.headers_mut() = out_headers;
        (resp, Some(transform))
    }

    /// The webhook response guards, prepared for a stream (their CEL headers read the
    /// client's request now; the calls happen window by window, after this handler returned).
    fn stream_webhooks(
        &self,
        px: &Proxy,
        pg: &crate::guard::PromptGuard,
        log: &RequestLog,
    ) -> Option<crate::guard::stream::RemoteGuards> {
        if !pg.streaming {
            return None;
        }
        let guards: Vec<crate::guard::window::RemoteGuard> = pg
            .response
            .iter()
            .filter_map(|g| match &g.kind {
                crate::guard::GuardKind::Webhook(w) => Some(crate::guard::window::RemoteGuard {
                    index: g.index,
                    webhook: w.clone(),
                    prepared: crate::guard::webhook::prepare(w, log, &self.parts.headers, false),
                    rejection: g.rejection.clone(),
                }),
                _ => None,
            })
            .collect();
        if guards.is_empty() {
            return None;
        }
        Some((
            guards,
            std::sync::Arc::new(crate::proxy::guard::BoundTransport::new(px)),
        ))
    }

    /// Observes the provider's events (tokens, finish reasons) and, when the formats differ,
    /// rewrites them into the client's.
    fn stream_handler(&self) -> Box<dyn StreamHandler> {
        let model = &self.model;
        match self.plan {
            Plan::Same => match (self.route, self.wire) {
                (RouteType::Messages, _) => Box::new(anthropic::MessagesStream::default()),
                (RouteType::Responses, _) => Box::<openai::ResponsesStream>::default(),
                (_, Wire::Gemini) => Box::<gemini::GenerateStream>::default(),
                _ => Box::new(openai::ChatStream::new(self.strip_usage)),
            },
            Plan::ChatToAnthropic => Box::new(chat_anthropic::Stream::new(
                model,
                self.include_usage_for_client,
            )),
            Plan::ChatToGemini => Box::new(chat_gemini::Stream::new(
                model,
                self.include_usage_for_client,
            )),
            Plan::MessagesToChat => Box::new(messages_chat::Stream::new(model)),
            Plan::EmbeddingsToGemini => Box::new(openai::ChatStream::new(false)),
            Plan::MessagesToGemini => Box::new(crate::llm::chain::Chain::new(
                Box::new(chat_gemini::Stream::new(model, true)),
                Box::new(messages_chat::Stream::new(model)),
            )),
        }
    }

    /// A whole JSON body: read (bounded), observed, and translated into the client's format.
    async fn json_response(
        &self,
        px: &Proxy,
        status: StatusCode,
        mut out_headers: HeaderMap,
        rbody: Incoming,
        log: &mut RequestLog,
        snap: &Snapshot,
    ) -> Result<Response<Body>, ProxyError> {
        let raw = read_upstream(
            rbody,
            snap.global.limits.max_response_body,
            snap.global.limits.stream_idle_timeout,
        )
        .await?;
        let mut parsed: Option<Value> = serde_json::from_slice(&raw).ok();
        let mut raw = raw;
        if self.ai.provider.is_bedrock()
            && let Some(v) = parsed.as_mut()
        {
            // Converse's answer as OpenAI chat: what the rest reads, and the client gets.
            *v = chat_bedrock::response(v, &self.model);
            raw = to_bytes(v);
        }
        if let Some(v) = parsed.as_mut() {
            match self.guard_response(px, v, log).await {
                Ok(true) => raw = to_bytes(v),
                Ok(false) => {}
                Err(e) => {
                    // The provider answered (and billed): keep its usage, not its text.
                    self.observe(v, llm(log));
                    llm(log).completion = None;
                    return Err(e);
                }
            }
        }
        let info = llm(log);
        let out_body = match (&parsed, self.plan) {
            (None, Plan::Same) => raw,
            (None, _) => {
                return Err(ProxyError::UpstreamProtocol(
                    "provider returned a body that is not JSON".into(),
                ));
            }
            (Some(v), _) => {
                self.observe(v, info);
                self.translate_response(v, raw)
            }
        };
        if !self.capture.completion {
            info.completion = None;
        }
        if self.plan != Plan::Same {
            out_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if status.is_success() && (info.input_tokens.is_some() || info.output_tokens.is_some()) {
            px.prices.price(info);
            if let Some(total) = info.cost.as_ref().and_then(|c| c.total())
                && let Ok(v) = HeaderValue::from_str(&total.to_string())
            {
                out_headers.insert(COST_HEADER, v);
            }
        }
        let mut resp = Response::new(crate::body::full(out_body));
        *resp.status_mut() = status;
        *resp.headers_mut() = out_headers;
        Ok(resp)
    }

    /// The response guards over a whole provider answer (before translation); `Ok(true)` when
    /// they changed it.
    async fn guard_response(
        &self,
        px: &Proxy,
        v: &mut Value,
        log: &mut RequestLog,
    ) -> Result<bool, ProxyError> {
        let Some(pg) = self.guard.clone() else {
            return Ok(false);
        };
        if pg.response.is_empty() {
            return Ok(false);
        }
        let mut info = log.guard.take().unwrap_or_default();
        let remote = crate::guard::request::Remote {
            transport: px,
            log,
            headers: &self.parts.headers,
        };
        let result = crate::guard::response::check(
            &pg,
            self.wire,
            self.up_route == RouteType::Responses,
            v,
            &remote,
            &mut info,
        )
        .await;
        log.guard = Some(info);
        result.map_err(|r| ProxyError::Guarded(Box::new((r, true))))
    }

    /// Usage, models and text of the provider's JSON answer, into the request's info.
    fn observe(&self, v: &Value, info: &mut LlmInfo) {
        match self.wire {
            Wire::Anthropic => anthropic::observe_response(v, info),
            Wire::Gemini => gemini::observe_response(v, info),
            Wire::OpenAi => openai::observe_response(v, info),
        }
    }

    /// The provider's JSON answer `v` (bytes `raw`) in the client's format.
    fn translate_response(&self, v: &Value, raw: Bytes) -> Bytes {
        let model = &self.model;
        match self.plan {
            Plan::Same => raw,
            Plan::ChatToAnthropic => to_bytes(&chat_anthropic::response(v, model)),
            Plan::ChatToGemini => to_bytes(&chat_gemini::response(v, model)),
            Plan::MessagesToChat => to_bytes(&messages_chat::response(v, model)),
            Plan::MessagesToGemini => to_bytes(&messages_chat::response(
                &chat_gemini::response(v, model),
                model,
            )),
            Plan::EmbeddingsToGemini => to_bytes(&chat_gemini::embeddings_response(v, model)),
        }
    }
}

/// The cost of a non-streamed response in USD, as a decimal (LiteLLM users know it as
/// `x-litellm-response-cost`). Streams carry theirs in telemetry only: it is known after the
/// headers went out.
pub const COST_HEADER: http::HeaderName = http::HeaderName::from_static("x-gateway-response-cost");

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// Headers safe to keep on a gateway-built response (no framing or encoding headers).
fn copy_safe(from: &HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        if k == CONTENT_TYPE || k == CONTENT_LENGTH || k == http::header::CONTENT_ENCODING {
            continue;
        }
        to.append(k.clone(), v.clone());
    }
}
