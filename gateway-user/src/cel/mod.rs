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
//! expression references are built per request; see `context.rs`. The engine is the `cel`
//! crate: the CEL standard library, its `strings` extension (`lowerAscii`, `split`, ...),
//! `matches` (regex), the `has`/`map`/`filter`/`all`/`exists` macros, and the gateway's own
//! functions in `functions.rs`. Timestamps and durations are not built in (`request.startTime`
//! is an RFC 3339 string).
//!
//! Compile cost is bounded before the parser runs (`limits.rs`): an expression is at most
//! `MAX_EXPRESSION_BYTES` (4096) bytes of CEL tokens and nests at most `MAX_DEPTH` (32) levels,
//! where each bracket and each chained `.`, index, call or operator other than `&&`/`||` is a
//! level. The parser runs on a thread of its own with a large stack (`parse`); evaluation runs on
//! the caller's, which the depth bound keeps small. See `limits.rs` for the measurements.

mod context;
mod functions;
mod limits;
#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::sync::{Arc, LazyLock};

use cel::{Context, Env, ExecutionError, ParseErrors, Program};

pub use cel::Value;
pub use cel::objects::{Key, Map};
pub use functions::{Flatten, as_flatten};
pub use limits::{MAX_DEPTH, MAX_EXPRESSION_BYTES};

use crate::ctx::RequestLog;

/// Errors from compiling or evaluating an expression. Messages quote the source, cut to
/// `SNIPPET_CHARS` characters: callers prefix the YAML path, and a 4 KiB expression repeated in
/// a log line helps nobody.
#[derive(Debug, thiserror::Error)]
pub enum CelError {
    /// The source does not parse.
    #[error("invalid CEL expression {}: {msg}", Snippet(src))]
    Parse { src: String, msg: String },
    /// The source was refused before parsing: it is over a compile-cost bound
    /// (`MAX_EXPRESSION_BYTES`, `MAX_DEPTH`) or has a character no CEL token starts with.
    /// `what` says which, e.g. "is 12000 bytes; the limit is 4096".
    #[error("CEL expression {} {what}", Snippet(src))]
    Rejected { src: String, what: String },
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

    /// The first parse error as `line:column: message` (the crate's own rendering repeats the
    /// whole source line), with the count of the others.
    fn from_parse(src: &str, e: &ParseErrors) -> Self {
        let msg = match e.errors.first() {
            Some(first) => {
                let mut msg = format!("{}:{}: {}", first.pos.0, first.pos.1, first.msg);
                truncate_chars(&mut msg, 2 * SNIPPET_CHARS);
                if e.errors.len() > 1 {
                    msg.push_str(&format!(" (and {} more errors)", e.errors.len() - 1));
                }
                msg
            }
            None => "syntax error".to_owned(),
        };
        CelError::Parse {
            src: src.to_owned(),
            msg: msg.replace('\n', " "),
        }
    }
}

/// How much of an expression an error message quotes.
const SNIPPET_CHARS: usize = 80;

/// Displays a source quoted, cut to `SNIPPET_CHARS` characters with a trailing `…`.
struct Snippet<'a>(&'a str);

impl fmt::Display for Snippet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(SNIPPET_CHARS) {
            Some((cut, _)) => write!(f, "{:?}…", &self.0[..cut]),
            None => write!(f, "{:?}", self.0),
        }
    }
}

fn truncate_chars(s: &mut String, max: usize) {
    if let Some((cut, _)) = s.char_indices().nth(max) {
        s.truncate(cut);
        s.push('…');
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
    pub guardrails: bool,
    pub api_key: bool,
    pub jwt: bool,
    pub basic_auth: bool,
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
        guardrails: true,
        api_key: true,
        jwt: true,
        basic_auth: true,
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
            guardrails: self.guardrails || o.guardrails,
            api_key: self.api_key || o.api_key,
            jwt: self.jwt || o.jwt,
            basic_auth: self.basic_auth || o.basic_auth,
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
    /// Checks the compile-cost bounds, then parses `src`. Unknown variables are not an error
    /// here (they may be absent per request).
    pub fn compile(src: &str) -> Result<Expression, CelError> {
        limits::check(src).map_err(|what| CelError::Rejected {
            src: src.to_owned(),
            what,
        })?;
        let program = parse(src)?;
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

/// Stack of the thread `parse` runs on. The parser (ANTLR-generated recursive descent) takes
/// about 8 KiB of stack per nesting level in a release build and 170 KiB in a debug build:
/// `MAX_DEPTH` levels would overflow a 2 MiB tokio or test thread in debug. The stack is
/// reserved address space; only what the parse touches is ever mapped.
const PARSE_STACK: usize = 16 << 20;

/// Parses `src` on a thread of its own, so parser recursion never depends on the caller's stack.
/// Compiles happen at config load, a few dozen at most; the thread costs tens of microseconds.
fn parse(src: &str) -> Result<Program, CelError> {
    let failed = |msg: String| CelError::Parse {
        src: src.to_owned(),
        msg,
    };
    std::thread::scope(|scope| {
        let parser = std::thread::Builder::new()
            .name("cel-parse".to_owned())
            .stack_size(PARSE_STACK)
            .spawn_scoped(scope, || {
                ENV.compile(src).map_err(|e| CelError::from_parse(src, &e))
            })
            .map_err(|e| failed(format!("cannot start the parser thread: {e}")))?;
        // A panic in the parser (none is known) is a config error, not a crashed reload.
        parser
            .join()
            .map_err(|_| failed("the parser failed on this input".to_owned()))?
    })
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
        guardrails: r.has_variable("guardrails"),
        api_key: r.has_variable("apiKey"),
        jwt: r.has_variable("jwt"),
        basic_auth: r.has_variable("basicAuth"),
    }
}

/// The standard library, the `strings` extension and the gateway's macros (`default`), shared
/// by the compiler (macros expand at parse time) and the root context.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(functions::env()));

/// Root context: the gateway's functions over `ENV`, built once per process.
static ROOT: LazyLock<Context<'static, 'static>> =
    LazyLock::new(|| functions::root_context(Arc::clone(&ENV)));

/// Evaluation context for one request: build once, evaluate many expressions.
pub struct Executor {
    ctx: Context<'static, 'static>,
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

    /// Adds a variable from JSON: `llmRequest` (the LLM request body) for routing conditions.
    pub fn set_json(&mut self, name: &str, v: &serde_json::Value) {
        self.ctx.add_variable_from_value(name, from_json(v));
    }

    pub fn eval(&self, expr: &Expression) -> Result<Value, CelError> {
        // A safety net, not a known failure: the interpreter is a dependency evaluating
        // operator-written expressions, and a panic in one must fail its field, not the
        // request (the telemetry thread, or an MCP list call).
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            expr.program.execute(&self.ctx)
        }))
        .map_err(|_| {
            CelError::Eval(format!(
                "expression {} is not supported",
                Snippet(&expr.src)
            ))
        })?
        .map_err(CelError::from_exec)
    }

    /// Evaluates a keep-filter: `true` keeps; anything else (false, error, missing) drops.
    pub fn eval_bool(&self, expr: &Expression) -> bool {
        matches!(self.eval(expr), Ok(Value::Bool(true)))
    }
}

/// Converts a CEL value to JSON with map keys sorted, so exported strings are stable.
/// Bytes become standard base64; functions (not representable) become `null`.
/// A CEL value as a single string (a rate-limit descriptor, a metric label): strings as they
/// are, numbers and booleans printed, lists and maps as JSON; null is no value.
pub fn display(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.to_string()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(to_json(other).to_string()),
    }
}

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
        // A `flatten(...)` result outside a field's top level exports as its argument.
        Value::Opaque(o) => match functions::flattened(o.as_ref()) {
            Some((_, inner)) => to_json(inner),
            None => o.json().unwrap_or(J::Null),
        },
        // Struct, and Timestamp/Duration when another crate enables cel's `chrono`.
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
