//! Gateway CEL functions on top of the standard library: `flatten`, `flatten_recursive`
//! (alias `flattenRecursive`), `json`, `toJson`, `default`, `base64.encode`, `base64.decode`.
//!
//! `flatten*` cannot expand into several attributes from inside the interpreter, so they wrap
//! their argument in a marker map; the telemetry field evaluator (`as_flatten`) recognises the
//! marker on the result and expands it under the field's name.

use std::sync::Arc;

use base64::Engine;
use cel_interpreter::objects::{Key, Map};
use cel_interpreter::{Context, ExecutionError, FunctionContext, Value};

use super::{from_json, to_json};

const FLATTEN: &str = "\u{1}flatten";
const FLATTEN_RECURSIVE: &str = "\u{1}flatten_recursive";
const BASE64_NS: &str = "\u{1}base64";

type Result<T> = std::result::Result<T, ExecutionError>;

/// How a field's value is to be expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flatten {
    /// One level: `{a: 1, b: {c: 2}}` under `x` → `x.a=1`, `x.b={"c":2}` (JSON).
    One,
    /// All levels, lists by index: `x.b.c=2`, `x.0.role=...`.
    Recursive,
}

pub(super) fn root_context() -> Context<'static> {
    let mut ctx = Context::default();
    ctx.add_function("flatten", |v: Value| -> Result<Value> {
        Ok(marker(FLATTEN, v))
    });
    ctx.add_function("flatten_recursive", |v: Value| -> Result<Value> {
        Ok(marker(FLATTEN_RECURSIVE, v))
    });
    ctx.add_function("flattenRecursive", |v: Value| -> Result<Value> {
        Ok(marker(FLATTEN_RECURSIVE, v))
    });
    ctx.add_function("json", json);
    ctx.add_function("toJson", to_json_fn);
    ctx.add_function("default", default);
    ctx.add_function("encode", base64_encode);
    ctx.add_function("decode", base64_decode);
    ctx.add_variable_from_value("base64", marker(BASE64_NS, Value::Null));
    ctx
}

fn marker(tag: &str, v: Value) -> Value {
    let mut m = std::collections::HashMap::with_capacity(1);
    m.insert(Key::String(Arc::new(tag.to_owned())), v);
    Value::Map(Map { map: Arc::new(m) })
}

fn unwrap_marker<'v>(tag: &str, v: &'v Value) -> Option<&'v Value> {
    match v {
        Value::Map(m) if m.map.len() == 1 => m.map.get(&Key::String(Arc::new(tag.to_owned()))),
        _ => None,
    }
}

/// If `v` is the result of `flatten(...)`/`flatten_recursive(...)`, the mode and inner value.
pub fn as_flatten(v: &Value) -> Option<(Flatten, &Value)> {
    if let Some(inner) = unwrap_marker(FLATTEN, v) {
        return Some((Flatten::One, inner));
    }
    unwrap_marker(FLATTEN_RECURSIVE, v).map(|inner| (Flatten::Recursive, inner))
}

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
fn to_json_fn(
    ftx: &FunctionContext,
    args: cel_interpreter::extractors::Arguments,
) -> Result<Value> {
    let v = match (&ftx.this, args.0.first()) {
        (Some(t), None) => t.clone(),
        (_, Some(a)) => a.clone(),
        (None, None) => return Err(ExecutionError::missing_argument_or_target()),
    };
    Ok(Value::String(Arc::new(to_json(&v).to_string())))
}

/// `default(expr, fallback)`: `fallback` when `expr` is missing (no such key, undeclared
/// variable) or null. Other errors propagate.
fn default(ftx: &FunctionContext) -> Result<Value> {
    if ftx.args.len() != 2 {
        return Err(ExecutionError::invalid_argument_count(2, ftx.args.len()));
    }
    match ftx.ptx.resolve(&ftx.args[0]) {
        Ok(Value::Null)
        | Err(ExecutionError::NoSuchKey(_))
        | Err(ExecutionError::UndeclaredReference(_)) => ftx.ptx.resolve(&ftx.args[1]),
        other => other,
    }
}

fn check_base64_ns(ftx: &FunctionContext) -> Result<()> {
    match &ftx.this {
        Some(t) if unwrap_marker(BASE64_NS, t).is_some() => Ok(()),
        _ => Err(ftx.error("only base64.encode/base64.decode are supported")),
    }
}

fn base64_encode(ftx: &FunctionContext, v: Value) -> Result<Value> {
    check_base64_ns(ftx)?;
    let bytes: &[u8] = match &v {
        Value::String(s) => s.as_bytes(),
        Value::Bytes(b) => b.as_slice(),
        other => return Err(ftx.error(format!("needs a string or bytes, got {other:?}"))),
    };
    Ok(Value::String(Arc::new(
        base64::engine::general_purpose::STANDARD.encode(bytes),
    )))
}

fn base64_decode(ftx: &FunctionContext, v: Value) -> Result<Value> {
    check_base64_ns(ftx)?;
    let input: &[u8] = match &v {
        Value::String(s) => s.as_bytes(),
        Value::Bytes(b) => b.as_slice(),
        other => return Err(ftx.error(format!("needs a string or bytes, got {other:?}"))),
    };
    let trimmed = input.strip_suffix(b"\n").unwrap_or(input);
    base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map(|b| Value::Bytes(Arc::new(b)))
        .map_err(|e| ftx.error(e))
}
