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
///
/// The interpreter eagerly evaluates the first argument of every one- and two-argument call
/// (to dispatch operators), which would turn a missing `expr` into an error before `default`
/// runs. `rewrite_default` therefore compiles `default(a, b)` as `default(null, a, b)`, a
/// three-argument call whose arguments are left to the function.
fn default(ftx: &FunctionContext) -> Result<Value> {
    let (expr, fallback) = match ftx.args.len() {
        3 => (&ftx.args[1], &ftx.args[2]),
        2 => (&ftx.args[0], &ftx.args[1]),
        n => {
            return Err(ExecutionError::invalid_argument_count(
                2,
                n.saturating_sub(1),
            ));
        }
    };
    match ftx.ptx.resolve(expr) {
        Ok(Value::Null)
        | Err(ExecutionError::NoSuchKey(_))
        | Err(ExecutionError::UndeclaredReference(_)) => ftx.ptx.resolve(fallback),
        other => other,
    }
}

/// Rewrites each global call `default(` outside string literals to `default(null, ` (see
/// `default`). Method calls (`x.default(`) and identifiers such as `my_default(` are left alone.
pub(super) fn rewrite_default(src: &str) -> std::borrow::Cow<'_, str> {
    if !src.contains("default") {
        return std::borrow::Cow::Borrowed(src);
    }
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 8);
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                // Skip the literal (triple-quoted or not), honouring backslash escapes.
                let triple = b.get(i..i + 3) == Some(&[q, q, q][..]);
                let close: &[u8] = if triple { &b[i..i + 3] } else { &b[i..i + 1] };
                i += close.len();
                while i < b.len() && !b[i..].starts_with(close) {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += close.len();
            }
            b'd' if b[i..].starts_with(b"default")
                && (i == 0
                    || !(b[i - 1].is_ascii_alphanumeric()
                        || b[i - 1] == b'_'
                        || b[i - 1] == b'.')) =>
            {
                let mut j = i + "default".len();
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < b.len() && b[j] == b'(' {
                    out.push_str(&src[last..=j]);
                    out.push_str("null, ");
                    last = j + 1;
                    i = j + 1;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&src[last.min(src.len())..]);
    std::borrow::Cow::Owned(out)
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

#[cfg(test)]
mod tests {
    use super::rewrite_default;

    #[test]
    fn default_rewrite_table() {
        for (src, want) in [
            ("default(a.b, 1)", "default(null, a.b, 1)"),
            (
                "default (a, 'default(x)')",
                "default (null, a, 'default(x)')",
            ),
            (
                "x.default(1) + my_default(2)",
                "x.default(1) + my_default(2)",
            ),
            (
                r#""default(" + string(default(a, "b"))"#,
                r#""default(" + string(default(null, a, "b"))"#,
            ),
            ("defaults(1)", "defaults(1)"),
        ] {
            assert_eq!(rewrite_default(src), want, "{src}");
        }
    }
}
