//! What CEL costs per request: the seeds' typical `fields.add` blocks, compiled once and
//! evaluated the way the telemetry thread does it (one `Executor` per request, then every
//! field), against an LLM request record like the bench's, on one thread, in process.
//!
//! `cargo xtask bench` reports it; `target/release/xtask __celbench` prints it alone, for a
//! before/after comparison of the CEL engine.

use std::time::{Duration, Instant};

use gateway::cel::Executor;
use gateway::config::telemetry::OrderedExprMap;
use gateway::ctx::RequestLog;
use gateway::telemetry::fields::{Attrs, Fields};

/// One block of fields, as a seed document writes it.
pub struct Block {
    pub name: &'static str,
    pub fields: &'static [(&'static str, &'static str)],
}

/// The seeds' blocks (agentgateway's docs and blog posts): GenAI names, Langfuse with prompt
/// and completion, Phoenix/OpenInference with `flatten_recursive` and `.map(...)`.
pub const BLOCKS: &[Block] = &[
    Block {
        name: "GenAI basics (6 fields)",
        fields: &[
            ("gen_ai.operation.name", r#""chat""#),
            ("gen_ai.system", "llm.provider"),
            ("gen_ai.request.model", "llm.request_model"),
            ("gen_ai.response.model", "llm.response_model"),
            ("gen_ai.usage.completion_tokens", "llm.output_tokens"),
            ("gen_ai.usage.prompt_tokens", "llm.input_tokens"),
        ],
    },
    Block {
        name: "Langfuse (9 fields, prompt, completion.map, flatten)",
        fields: &[
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
    },
    Block {
        name: "Phoenix / OpenInference (8 fields, flatten_recursive)",
        fields: &[
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
    },
];

/// The bench's chat request with a two-message prompt and one completion recorded.
fn record() -> RequestLog {
    let mut l = super::viewer::bench_log(0);
    if let Some(llm) = l.llm.as_mut() {
        llm.params
            .insert("temperature".into(), serde_json::json!(0.2));
        llm.prompt = Some(serde_json::json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello in one short sentence."},
        ]));
        llm.completion = Some(vec!["Hello there.".into()]);
    }
    l
}

/// Per-request evaluation cost of one block.
#[derive(Clone, Debug)]
pub struct CelRow {
    pub block: &'static str,
    pub fields: usize,
    pub attrs: usize,
    pub per_request: Duration,
    pub compile: Duration,
}

pub fn micro() -> anyhow::Result<Vec<CelRow>> {
    const N: u32 = 20_000;
    let log = record();
    let mut out = Vec::new();
    for b in BLOCKS {
        let add = OrderedExprMap(
            b.fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        let t0 = Instant::now();
        let fields = Fields::compile(&add, &[], "bench")?;
        let compile = t0.elapsed();
        let refs = fields.refs();
        let mut attrs = 0;
        let mut errors = 0;
        // Warm-up, then the measured loop.
        for round in 0..2 {
            let n = if round == 0 { N / 10 } else { N };
            let t0 = Instant::now();
            for _ in 0..n {
                let exec = Executor::new(&log, refs);
                let mut a = Attrs::new();
                fields.eval_into(&exec, &mut a, |_, o| {
                    if matches!(o, gateway::telemetry::fields::FieldOutcome::Error(_)) {
                        errors += 1;
                    }
                });
                attrs = a.len();
                std::hint::black_box(a);
            }
            if round == 1 {
                anyhow::ensure!(errors == 0, "{}: {errors} field errors", b.name);
                out.push(CelRow {
                    block: b.name,
                    fields: b.fields.len(),
                    attrs,
                    per_request: t0.elapsed() / n,
                    compile,
                });
            }
        }
    }
    Ok(out)
}

/// Hidden `__celbench`: the figures alone.
pub fn main() -> anyhow::Result<()> {
    for r in micro()? {
        println!(
            "{:<56} {:>2} fields -> {:>2} attributes: {:>7.2} µs per request (compile {:.0} µs)",
            r.block,
            r.fields,
            r.attrs,
            r.per_request.as_secs_f64() * 1e6,
            r.compile.as_secs_f64() * 1e6
        );
    }
    Ok(())
}
