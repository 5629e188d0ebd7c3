//! Every seed document's `fields.add` list (Gemini, Jaeger, Langfuse, Phoenix, OpenLLMetry,
//! policy attributes, enterprise fields), compiled as `Fields` and evaluated by CEL against
//! the shared fixture request (`cel::tests::fixture`).

use crate::cel::Executor;
use crate::cel::tests::fixture;
use crate::config::telemetry::OrderedExprMap;
use crate::ctx::RequestLog;
use crate::telemetry::fields::{AttrValue, Attrs, FieldOutcome, Fields};

fn eval_fields(pairs: &[(&str, &str)], log: &RequestLog) -> (Attrs<'static>, usize) {
    let add = OrderedExprMap(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let f = Fields::compile(&add, &[], "config.tracing.fields.add").expect("seed fields compile");
    let exec = Executor::new(log, f.refs());
    let mut out = Attrs::new();
    let mut errors = 0;
    f.eval_into(&exec, &mut out, |_, o| {
        if let FieldOutcome::Error(_) = o {
            errors += 1
        }
    });
    (out, errors)
}

fn s(v: &str) -> AttrValue<'_> {
    AttrValue::from(v)
}

fn check(name: &str, pairs: &[(&str, &str)], want: &[(&str, AttrValue)]) {
    let (got, errors) = eval_fields(pairs, &fixture());
    assert_eq!(errors, 0, "{name}: evaluation errors; got {got:?}");
    let want: Attrs = want
        .iter()
        .map(|(k, v)| (k.to_string().into(), v.clone()))
        .collect();
    assert_eq!(got, want, "{name}");
}

#[test]
fn seed_000_gemini_camel_case() {
    check(
        "seed 000",
        &[
            ("gen_ai.operation.name", r#""chat""#),
            ("gen_ai.system", "llm.provider"),
            ("gen_ai.request.model", "llm.requestModel"),
            ("gen_ai.response.model", "llm.responseModel"),
            ("gen_ai.usage.completion_tokens", "llm.outputTokens"),
            ("gen_ai.usage.prompt_tokens", "llm.inputTokens"),
        ],
        &[
            ("gen_ai.operation.name", s("chat")),
            ("gen_ai.system", s("openai")),
            ("gen_ai.request.model", s("gpt-4o-mini")),
            ("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
            ("gen_ai.usage.completion_tokens", AttrValue::Int(313)),
            ("gen_ai.usage.prompt_tokens", AttrValue::Int(8)),
        ],
    );
}

#[test]
fn seed_001_jaeger_snake_case() {
    check(
        "seed 001 jaeger",
        &[
            ("gen_ai.operation.name", r#""chat""#),
            ("gen_ai.system", "llm.provider"),
            ("gen_ai.request.model", "llm.request_model"),
            ("gen_ai.response.model", "llm.response_model"),
            ("gen_ai.usage.completion_tokens", "llm.output_tokens"),
            ("gen_ai.usage.prompt_tokens", "llm.input_tokens"),
        ],
        &[
            ("gen_ai.operation.name", s("chat")),
            ("gen_ai.system", s("openai")),
            ("gen_ai.request.model", s("gpt-4o-mini")),
            ("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
            ("gen_ai.usage.completion_tokens", AttrValue::Int(313)),
            ("gen_ai.usage.prompt_tokens", AttrValue::Int(8)),
        ],
    );
}

#[test]
fn seed_langfuse_prompt_json_completion_map_and_flatten() {
    check(
        "langfuse",
        &[
            ("gen_ai.operation.name", r#""chat""#),
            ("gen_ai.system", "llm.provider"),
            ("gen_ai.prompt", "llm.prompt"),
            (
                "gen_ai.completion",
                r#"llm.completion.map(c, {"role":"assistant", "content": c})"#,
            ),
            ("gen_ai.usage.completion_tokens", "llm.output_tokens"),
            ("gen_ai.usage.prompt_tokens", "llm.input_tokens"),
            ("gen_ai.request.model", "llm.request_model"),
            ("gen_ai.response.model", "llm.response_model"),
            ("gen_ai.request", "flatten(llm.params)"),
        ],
        &[
            ("gen_ai.operation.name", s("chat")),
            ("gen_ai.system", s("openai")),
            (
                "gen_ai.prompt",
                s(r#"[{"content":"Be brief","role":"system"},{"content":"hi","role":"user"}]"#),
            ),
            (
                "gen_ai.completion",
                s(r#"[{"content":"Hello!","role":"assistant"}]"#),
            ),
            ("gen_ai.usage.completion_tokens", AttrValue::Int(313)),
            ("gen_ai.usage.prompt_tokens", AttrValue::Int(8)),
            ("gen_ai.request.model", s("gpt-4o-mini")),
            ("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
            ("gen_ai.request.max_tokens", AttrValue::Int(100)),
            ("gen_ai.request.temperature", AttrValue::F64(0.7)),
        ],
    );
}

#[test]
fn seed_phoenix_openinference_messages() {
    check(
        "phoenix",
        &[
            ("span.name", r#""openai.chat""#),
            ("openinference.span.kind", r#""LLM""#),
            ("llm.system", "llm.provider"),
            (
                "llm.input_messages",
                r#"flatten_recursive(llm.prompt.map(c, {"message": c}))"#,
            ),
            (
                "llm.output_messages",
                r#"flatten_recursive(llm.completion.map(c, {"role":"assistant", "content": c}))"#,
            ),
            ("llm.token_count.completion", "llm.output_tokens"),
            ("llm.token_count.prompt", "llm.input_tokens"),
            ("llm.token_count.total", "llm.total_tokens"),
        ],
        &[
            ("span.name", s("openai.chat")),
            ("openinference.span.kind", s("LLM")),
            ("llm.system", s("openai")),
            ("llm.input_messages.0.message.content", s("Be brief")),
            ("llm.input_messages.0.message.role", s("system")),
            ("llm.input_messages.1.message.content", s("hi")),
            ("llm.input_messages.1.message.role", s("user")),
            ("llm.output_messages.0.content", s("Hello!")),
            ("llm.output_messages.0.role", s("assistant")),
            ("llm.token_count.completion", AttrValue::Int(313)),
            ("llm.token_count.prompt", AttrValue::Int(8)),
            ("llm.token_count.total", AttrValue::Int(321)),
        ],
    );
}

#[test]
fn seed_openllmetry_flattened_prompt_and_streaming() {
    check(
        "openllmetry",
        &[
            ("span.name", r#""openai.chat""#),
            ("gen_ai.operation.name", r#""chat""#),
            ("gen_ai.system", "llm.provider"),
            ("gen_ai.prompt", "flatten_recursive(llm.prompt)"),
            (
                "gen_ai.completion",
                r#"flatten_recursive(llm.completion.map(c, {"role":"assistant", "content": c}))"#,
            ),
            ("gen_ai.usage.completion_tokens", "llm.output_tokens"),
            ("gen_ai.usage.prompt_tokens", "llm.input_tokens"),
            ("gen_ai.request.model", "llm.request_model"),
            ("gen_ai.response.model", "llm.response_model"),
            ("gen_ai.request", "flatten(llm.params)"),
            ("llm.is_streaming", "llm.streaming"),
        ],
        &[
            ("span.name", s("openai.chat")),
            ("gen_ai.operation.name", s("chat")),
            ("gen_ai.system", s("openai")),
            ("gen_ai.prompt.0.content", s("Be brief")),
            ("gen_ai.prompt.0.role", s("system")),
            ("gen_ai.prompt.1.content", s("hi")),
            ("gen_ai.prompt.1.role", s("user")),
            ("gen_ai.completion.0.content", s("Hello!")),
            ("gen_ai.completion.0.role", s("assistant")),
            ("gen_ai.usage.completion_tokens", AttrValue::Int(313)),
            ("gen_ai.usage.prompt_tokens", AttrValue::Int(8)),
            ("gen_ai.request.model", s("gpt-4o-mini")),
            ("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
            ("gen_ai.request.max_tokens", AttrValue::Int(100)),
            ("gen_ai.request.temperature", AttrValue::F64(0.7)),
            ("llm.is_streaming", AttrValue::Bool(false)),
        ],
    );
}

#[test]
fn seed_002_policy_attribute_request_host() {
    check(
        "seed 002",
        &[("request.host", "request.host")],
        &[("request.host", s("localhost"))],
    );
}

#[test]
fn seed_004_enterprise_fields() {
    check(
        "seed 004",
        &[
            ("gen_ai.operation.name", r#""chat""#),
            ("gen_ai.system", "llm.provider"),
            ("gen_ai.request.model", "llm.requestModel"),
            ("gen_ai.response.model", "llm.responseModel"),
            ("gen_ai.usage.prompt_tokens", "llm.inputTokens"),
            ("gen_ai.usage.completion_tokens", "llm.outputTokens"),
            ("gen_ai.usage.total_tokens", "llm.totalTokens"),
            ("gen_ai.request.temperature", "llm.params.temperature"),
            ("gen_ai.prompt", "llm.prompt"),
            ("gen_ai.completion", "llm.completion"),
        ],
        &[
            ("gen_ai.operation.name", s("chat")),
            ("gen_ai.system", s("openai")),
            ("gen_ai.request.model", s("gpt-4o-mini")),
            ("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
            ("gen_ai.usage.prompt_tokens", AttrValue::Int(8)),
            ("gen_ai.usage.completion_tokens", AttrValue::Int(313)),
            ("gen_ai.usage.total_tokens", AttrValue::Int(321)),
            ("gen_ai.request.temperature", AttrValue::F64(0.7)),
            (
                "gen_ai.prompt",
                s(r#"[{"content":"Be brief","role":"system"},{"content":"hi","role":"user"}]"#),
            ),
            ("gen_ai.completion", s(r#"["Hello!"]"#)),
        ],
    );
}
