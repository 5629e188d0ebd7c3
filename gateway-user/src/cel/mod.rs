//! CEL expressions from config, compiled once at load and evaluated against a request record.
//!
//! API (stable; other subsystems depend on it):
//! - `Expression::compile(src) -> Result<Expression, CelError>`
//! - `Expression::eval(&self, &RequestLog) -> Result<Value, CelError>`
//! - `Expression::references(&self) -> Refs` tells which request data must be captured.
//! - `Executor::new(&RequestLog, Refs)` builds the variables once for many expressions.
//!
//! The context follows agentgateway's CEL reference (`request`, `response`, `llm`, `source`,
//! `backend`, `mcp`, `env`), with every camelCase `llm`/`mcp` field also reachable in
//! snake_case (`llm.requestModel` == `llm.request_model`). Only the top-level variables an
//! expression references are built per request; see `context.rs`.

mod context;
mod functions;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::{Arc, LazyLock};

use cel_interpreter::{Context, ExecutionError, Program};

pub use cel_interpreter::Value;
pub use cel_interpreter::objects::{Key, Map};
pub use functions::{Flatten, as_flatten};

use crate::ctx::RequestLog;

/// Errors from compiling or evaluating an expression.
#[derive(Debug, thiserror::Error)]
pub enum CelError {
    /// The source does not parse.
    #[error("invalid CEL expression {src:?}: {msg}")]
    Parse { src: String, msg: String },
    /// A referenced key or variable is absent for this request (e.g. `llm.*` on a non-LLM
    /// request). Telemetry treats this as "no value", not as a failure.
    #[error("missing value: {0}")]
    Missing(String),
    /// Any other evaluation failure (type mismatch, bad function argument, ...).
    #[error("CEL evaluation failed: {0}")]
    Eval(String),
}

impl CelError {
    fn from_exec(e: ExecutionError) -> Self {
        match e {
            ExecutionError::NoSuchKey(k) => CelError::Missing(k.to_string()),
            ExecutionError::UndeclaredReference(k) => CelError::Missing(k.to_string()),
            other => CelError::Eval(other.to_string()),
        }
    }
}

/// Which parts of the request record an expression reads. `Refs` are conservative: a false
/// positive only costs capturing data that is not used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refs {
    pub request: bool,
    pub request_headers: bool,
    pub response: bool,
    pub response_headers: bool,
    pub llm: bool,
    pub llm_prompt: bool,
    pub llm_completion: bool,
    pub source: bool,
    pub backend: bool,
    pub mcp: bool,
    pub env: bool,
}

impl Refs {
    /// Every variable: for callers that cannot know what they will evaluate.
    pub const ALL: Refs = Refs {
        request: true,
        request_headers: true,
        response: true,
        response_headers: true,
        llm: true,
        llm_prompt: true,
        llm_completion: true,
        source: true,
        backend: true,
        mcp: true,
        env: true,
    };

    pub fn union(self, o: Refs) -> Refs {
        Refs {
            request: self.request || o.request,
            request_headers: self.request_headers || o.request_headers,
            response: self.response || o.response,
            response_headers: self.response_headers || o.response_headers,
            llm: self.llm || o.llm,
            llm_prompt: self.llm_prompt || o.llm_prompt,
            llm_completion: self.llm_completion || o.llm_completion,
            source: self.source || o.source,
            backend: self.backend || o.backend,
            mcp: self.mcp || o.mcp,
            env: self.env || o.env,
        }
    }
}

/// A compiled CEL expression.
#[derive(Debug)]
pub struct Expression {
    src: String,
    program: Program,
    refs: Refs,
}

// === impl Expression ===

impl Expression {
    /// Parses `src`. Unknown variables are not an error here (they may be absent per request).
    pub fn compile(src: &str) -> Result<Expression, CelError> {
        let parse_err = |msg: String| CelError::Parse {
            src: src.to_owned(),
            msg,
        };
        let rewritten = functions::rewrite_default(src);
        // The ANTLR-generated parser panics on some truncated inputs; that is a config error.
        let program = std::panic::catch_unwind(|| Program::compile(&rewritten))
            .map_err(|_| parse_err("syntax error".to_owned()))?
            .map_err(|e| parse_err(e.to_string().replace('\n', " ")))?;
        let refs = scan_refs(&program, src);
        Ok(Expression {
            src: src.to_owned(),
            program,
            refs,
        })
    }

    pub fn source(&self) -> &str {
        &self.src
    }

    pub fn references(&self) -> Refs {
        self.refs
    }

    /// Evaluates against `log`, building only the variables this expression reads.
    pub fn eval(&self, log: &RequestLog) -> Result<Value, CelError> {
        Executor::new(log, self.refs).eval(self)
    }
}

fn scan_refs(program: &Program, src: &str) -> Refs {
    let r = program.references();
    // The parser reports top-level variables only. Sub-fields are found textually: a word
    // anywhere in the source (even inside a string literal, as in `llm["prompt"]`) counts, which
    // errs on the side of capturing.
    let request = r.has_variable("request");
    let response = r.has_variable("response");
    let llm = r.has_variable("llm");
    Refs {
        request,
        request_headers: request && src.contains("headers"),
        response,
        response_headers: response && src.contains("headers"),
        llm,
        llm_prompt: llm && src.contains("prompt"),
        llm_completion: llm && src.contains("completion"),
        source: r.has_variable("source"),
        backend: r.has_variable("backend"),
        mcp: r.has_variable("mcp"),
        env: r.has_variable("env"),
    }
}

/// Root context: functions plus constant variables, built once per process.
static ROOT: LazyLock<Context<'static>> = LazyLock::new(functions::root_context);

/// Evaluation context for one request: build once, evaluate many expressions.
pub struct Executor {
    ctx: Context<'static>,
}

// === impl Executor ===

impl Executor {
    pub fn new(log: &RequestLog, refs: Refs) -> Executor {
        let mut ctx = ROOT.new_inner_scope();
        context::populate(&mut ctx, log, refs);
        Executor { ctx }
    }

    /// A context with no request variables (for startup-time expressions such as resources).
    pub fn empty() -> Executor {
        Executor {
            ctx: ROOT.new_inner_scope(),
        }
    }

    pub fn eval(&self, expr: &Expression) -> Result<Value, CelError> {
        // cel-interpreter panics on a few inputs (e.g. message literals `T{a: 1}`); a bad
        // expression must fail its field, not the request.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            expr.program.execute(&self.ctx)
        }))
        .map_err(|_| CelError::Eval(format!("expression {:?} is not supported", expr.src)))?
        .map_err(CelError::from_exec)
    }

    /// Evaluates a keep-filter: `true` keeps; anything else (false, error, missing) drops.
    pub fn eval_bool(&self, expr: &Expression) -> bool {
        matches!(self.eval(expr), Ok(Value::Bool(true)))
    }
}

/// Converts a CEL value to JSON with map keys sorted, so exported strings are stable.
/// Bytes become standard base64; functions (not representable) become `null`.
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::List(l) => J::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => {
            let mut entries: Vec<(String, &Value)> =
                m.map.iter().map(|(k, v)| (k.to_string(), v)).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            J::Object(entries.into_iter().map(|(k, v)| (k, to_json(v))).collect())
        }
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.to_string()),
        Value::Bytes(b) => {
            use base64::Engine;
            J::String(base64::engine::general_purpose::STANDARD.encode(b.as_slice()))
        }
        Value::Bool(b) => J::Bool(*b),
        Value::Null | Value::Function(..) => J::Null,
        // Timestamp/Duration exist when another crate enables cel-interpreter's `chrono`.
        #[allow(unreachable_patterns)]
        other => other.json().unwrap_or(J::Null),
    }
}

/// Converts JSON into a CEL value.
pub fn from_json(j: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Value::String(Arc::new(s.clone())),
        J::Array(a) => Value::List(Arc::new(a.iter().map(from_json).collect())),
        J::Object(o) => Value::Map(Map {
            map: Arc::new(
                o.iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.clone())), from_json(v)))
                    .collect(),
            ),
        }),
    }
}
