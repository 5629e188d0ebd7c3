//! Gateway CEL functions on top of the standard library: `flatten`, `flatten_recursive`
//! (alias `flattenRecursive`), `json`, `toJson`, `default`, `base64.encode`, `base64.decode`.
//!
//! `flatten*` cannot expand into several attributes from inside the interpreter, so they wrap
//! their argument in an opaque marker value; the telemetry field evaluator (`as_flatten`)
//! recognises the marker on the result and expands it under the field's name.
//!
//! `default(expr, fallback)` is a macro, not a function: the interpreter evaluates every
//! argument of a call before the call, so a function could never see that `expr` is missing.

use std::sync::Arc;

use base64::Engine;
use cel::common::ast::{CallExpr, Expr, IdedExpr, LiteralValue, operators};
use cel::objects::Opaque;
use cel::parser::{Macro, MacroExprHelper, ParseError};
use cel::{Context, DeclarationError, Env, ExecutionError, FunctionContext, Value, extensions};

use super::{from_json, to_json};

type Result<T> = std::result::Result<T, ExecutionError>;

/// How a field's value is to be expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flatten {
    /// One level: `{a: 1, b: {c: 2}}` under `x` → `x.a=1`, `x.b={"c":2}` (JSON).
    One,
    /// All levels, lists by index: `x.b.c=2`, `x.0.role=...`.
    Recursive,
}

/// The standard library, the `strings` extension and the `default` macro.
pub(super) fn env() -> Env {
    let mut env = Env::stdlib();
    // Both are fixed at build time: an error here is a programming error that every CEL test
    // hits on its first expression.
    env.add_extension(extensions::strings)
        .expect("the strings extension declares nothing the stdlib has");
    env.add_macro(Macro::global("default", 2, expand_default))
        .expect("the stdlib has no `default` macro");
    env
}

pub(super) fn root_context(env: Arc<Env>) -> Context<'static, 'static> {
    let mut ctx = Context::with_env(env);
    let added: [std::result::Result<(), DeclarationError>; 7] = [
        ctx.add_function("flatten", |v: Value| flatten(Flatten::One, v)),
        ctx.add_function("flatten_recursive", |v: Value| {
            flatten(Flatten::Recursive, v)
        }),
        ctx.add_function("flattenRecursive", |v: Value| {
            flatten(Flatten::Recursive, v)
        }),
        ctx.add_function("json", json),
        ctx.add_function("toJson", to_json_fn),
        ctx.add_function("base64.encode", base64_encode),
        ctx.add_function("base64.decode", base64_decode),
    ];
    for r in added {
        // The names are constants no stdlib or `strings` overload uses; see `env`.
        r.expect("gateway CEL function names are free");
    }
    ctx
}

// === flatten ===

/// The value `flatten(v)` / `flatten_recursive(v)` returns: `v`, marked.
#[derive(Debug, PartialEq)]
struct Flattened {
    mode: Flatten,
    inner: Value,
}

// `Opaque` needs `Eq`; a marker holding a NaN is unequal to itself, which CEL equality on
// doubles is anyway.
impl Eq for Flattened {}

impl Opaque for Flattened {
    fn runtime_type_name(&self) -> &str {
        "gateway.Flattened"
    }

    fn json(&self) -> Option<serde_json::Value> {
        Some(to_json(&self.inner))
    }
}

fn flatten(mode: Flatten, inner: Value) -> Value {
    Value::Opaque(Arc::new(Flattened { mode, inner }))
}

/// If `o` is a `flatten(...)`/`flatten_recursive(...)` marker, the mode and inner value.
pub(super) fn flattened(o: &dyn Opaque) -> Option<(Flatten, &Value)> {
    o.downcast_ref::<Flattened>().map(|f| (f.mode, &f.inner))
}

/// If `v` is the result of `flatten(...)`/`flatten_recursive(...)`, the mode and inner value.
pub fn as_flatten(v: &Value) -> Option<(Flatten, &Value)> {
    match v {
        Value::Opaque(o) => flattened(o.as_ref()),
        _ => None,
    }
}

// === json, toJson ===

/// `json(string|bytes)`: parses JSON into a CEL value.
fn json(ftx: &FunctionContext, v: Value) -> Result<Value> {
    let parsed: serde_json::Value = match &v {
        Value::String(s) => serde_json::from_str(s),
        Value::Bytes(b) => serde_json::from_slice(b),
        other => return Err(ftx.error(format!("json() needs a string or bytes, got {other:?}"))),
    }
    .map_err(|e| ftx.error(e))?;
    Ok(from_json(&parsed))
}

/// `toJson(value)` or `value.toJson()`: serializes to a JSON string (map keys sorted).
fn to_json_fn(ftx: &FunctionContext) -> Result<Value> {
    let v = match (&ftx.this, ftx.args.first()) {
        (Some(t), None) => t,
        (_, Some(a)) => a,
        (None, None) => return Err(ExecutionError::missing_argument_or_target()),
    };
    let v = Value::try_from(v.as_ref())?;
    Ok(Value::String(Arc::new(to_json(&v).to_string())))
}

// === default ===

/// `default(expr, fallback)` → `!@not_strictly_false(expr == null) ? expr : fallback`.
///
/// `@not_strictly_false(x)` (the guard of `all`/`exists`) is true when `x` fails or is true,
/// so the condition holds exactly when `expr` evaluates without error to a non-null value:
/// `fallback` replaces a missing key or variable, a null, and any other evaluation error.
/// `expr` is evaluated twice when present; it is typically a field path.
fn expand_default(
    helper: &mut MacroExprHelper<'_>,
    _target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> std::result::Result<Option<IdedExpr>, ParseError> {
    let (Some(fallback), Some(expr)) = (args.pop(), args.pop()) else {
        // The macro is declared for exactly two arguments.
        return Ok(None);
    };
    let null = helper.next_expr(Expr::Literal(LiteralValue::Null));
    let is_null = call(helper, operators::EQUALS, vec![expr.clone(), null]);
    let unusable = call(helper, operators::NOT_STRICTLY_FALSE, vec![is_null]);
    let usable = call(helper, operators::LOGICAL_NOT, vec![unusable]);
    Ok(Some(call(
        helper,
        operators::CONDITIONAL,
        vec![usable, expr, fallback],
    )))
}

fn call(helper: &mut MacroExprHelper<'_>, func: &str, args: Vec<IdedExpr>) -> IdedExpr {
    helper.next_expr(Expr::Call(CallExpr {
        func_name: func.to_owned(),
        target: None,
        args,
    }))
}

// === base64 ===

fn bytes_arg<'v>(ftx: &FunctionContext, v: &'v Value) -> Result<&'v [u8]> {
    match v {
        Value::String(s) => Ok(s.as_bytes()),
        Value::Bytes(b) => Ok(b.as_slice()),
        other => Err(ftx.error(format!("needs a string or bytes, got {other:?}"))),
    }
}

/// `base64.encode(string|bytes)`: standard alphabet, padded.
fn base64_encode(ftx: &FunctionContext, v: Value) -> Result<Value> {
    let bytes = bytes_arg(ftx, &v)?;
    Ok(Value::String(Arc::new(
        base64::engine::general_purpose::STANDARD.encode(bytes),
    )))
}

/// `base64.decode(string|bytes)`: standard alphabet, padding optional, one trailing newline
/// ignored (as `base64` the tool writes it).
fn base64_decode(ftx: &FunctionContext, v: Value) -> Result<Value> {
    let input = bytes_arg(ftx, &v)?;
    let trimmed = input.strip_suffix(b"\n").unwrap_or(input);
    base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map(|b| Value::Bytes(Arc::new(b)))
        .map_err(|e| ftx.error(e))
}
