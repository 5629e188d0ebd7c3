//! Attribute values and the compiled `fields: {add, remove}` lists shared by spans and the
//! access log.
//!
//! Value mapping (documented for users): CEL ints/uints → Int, doubles → Double, bools → Bool,
//! strings → String, bytes → base64 String; a list or map that is not flattened → its JSON
//! text (keys sorted), so `gen_ai.prompt: llm.prompt` exports `[{"content":..,"role":..}]`.
//! `null` or a missing key omits the attribute. `flatten(x)` expands one level into
//! `<field>.<key>` attributes, `flatten_recursive(x)` every level (lists by index).

use std::borrow::Cow;
use std::fmt;

use crate::cel::{self, CelError, Executor, Expression, Flatten, Refs, Value};
use crate::config::telemetry::OrderedExprMap;

use super::TelemetryError;

/// One exported attribute / log field value. Strings borrow from the request record where
/// they can (the default fields), so building a request's fields copies no text; values from
/// CEL or formatting are owned.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    F64(f64),
    Bool(bool),
    /// A string array (OTLP array value; JSON text in the access log).
    StrList(Vec<String>),
}

impl fmt::Display for AttrValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::F64(v) => write!(f, "{v}"),
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::StrList(l) => f.write_str(&serde_json::to_string(l).unwrap_or_default()),
        }
    }
}

impl AttrValue<'_> {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            AttrValue::Str(s) => s.as_ref().into(),
            AttrValue::Int(i) => (*i).into(),
            AttrValue::F64(v) => serde_json::Number::from_f64(*v)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            AttrValue::Bool(b) => (*b).into(),
            AttrValue::StrList(l) => l.clone().into(),
        }
    }

    /// The same value, owning its text.
    pub fn into_owned(self) -> AttrValue<'static> {
        match self {
            AttrValue::Str(s) => AttrValue::Str(Cow::Owned(s.into_owned())),
            AttrValue::Int(i) => AttrValue::Int(i),
            AttrValue::F64(v) => AttrValue::F64(v),
            AttrValue::Bool(b) => AttrValue::Bool(b),
            AttrValue::StrList(l) => AttrValue::StrList(l),
        }
    }
}

impl AttrValue<'static> {
    /// A string known at compile time: never copied.
    pub fn static_str(s: &'static str) -> Self {
        AttrValue::Str(Cow::Borrowed(s))
    }
}

impl<'a> From<&'a str> for AttrValue<'a> {
    fn from(s: &'a str) -> Self {
        AttrValue::Str(Cow::Borrowed(s))
    }
}
impl From<String> for AttrValue<'_> {
    fn from(s: String) -> Self {
        AttrValue::Str(Cow::Owned(s))
    }
}
impl From<u64> for AttrValue<'_> {
    fn from(v: u64) -> Self {
        AttrValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

/// An attribute name: the built-in ones are static (no allocation per request), names from
/// config or from flattened values are owned.
pub type AttrKey = std::borrow::Cow<'static, str>;

/// Ordered attribute list (small; linear search beats hashing here).
pub type Attrs<'a> = Vec<(AttrKey, AttrValue<'a>)>;

/// Replaces or appends `key`.
pub fn upsert<'a>(attrs: &mut Attrs<'a>, key: impl Into<AttrKey>, v: AttrValue<'a>) {
    let key = key.into();
    if let Some(slot) = attrs.iter_mut().find(|(k, _)| *k == key) {
        slot.1 = v;
    } else {
        attrs.push((key, v));
    }
}

/// Scalar conversion; lists and maps become JSON text. `None` for null.
pub fn to_attr(v: &Value) -> Option<AttrValue<'static>> {
    Some(match v {
        Value::Null | Value::Function(..) => return None,
        Value::Int(i) => AttrValue::Int(*i),
        Value::UInt(u) => AttrValue::Int(i64::try_from(*u).unwrap_or(i64::MAX)),
        Value::Float(f) => AttrValue::F64(*f),
        Value::Bool(b) => AttrValue::Bool(*b),
        Value::String(s) => s.as_str().to_owned().into(),
        // Bytes, lists, maps (and chrono's Timestamp/Duration if that feature is on).
        _ => match cel::to_json(v) {
            serde_json::Value::String(s) => s.into(),
            j => j.to_string().into(),
        },
    })
}

/// Expands a flattened value under `prefix` into `out`: maps by sorted key, lists by index;
/// below the first level only in recursive mode.
fn flatten_into(prefix: &str, v: &Value, mode: Flatten, depth: usize, out: &mut Attrs<'_>) {
    let expand = depth == 0 || mode == Flatten::Recursive;
    match v {
        Value::Map(m) if expand => {
            let mut entries: Vec<_> = m.map.iter().map(|(k, v)| (k.to_string(), v)).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, cv) in entries {
                flatten_into(&format!("{prefix}.{k}"), cv, mode, depth + 1, out);
            }
        }
        Value::List(l) if expand => {
            for (i, cv) in l.iter().enumerate() {
                flatten_into(&format!("{prefix}.{i}"), cv, mode, depth + 1, out);
            }
        }
        other => {
            if let Some(a) = to_attr(other) {
                upsert(out, prefix.to_owned(), a);
            }
        }
    }
}

/// Result of evaluating one field.
pub enum FieldOutcome {
    Added,
    /// Missing key / null: nothing added, not an error.
    Absent,
    /// Evaluation failed: nothing added; caller counts it.
    Error(CelError),
}

/// A compiled `fields` block.
#[derive(Debug, Default)]
pub struct Fields {
    add: Vec<(String, Expression)>,
    remove: Vec<String>,
}

// === impl Fields ===

impl Fields {
    /// Compiles `add`; `path` is the YAML path of the `add` map, for errors.
    pub fn compile(
        add: &OrderedExprMap,
        remove: &[String],
        path: &str,
    ) -> Result<Fields, TelemetryError> {
        let mut out = Fields {
            add: Vec::with_capacity(add.0.len()),
            remove: remove.to_vec(),
        };
        for (name, src) in &add.0 {
            let expr = Expression::compile(src).map_err(|source| TelemetryError::Cel {
                path: format!("{path}[{name:?}]"),
                source,
            })?;
            out.add.push((name.clone(), expr));
        }
        Ok(out)
    }

    /// Appends other's entries (later entries override same-named earlier ones at eval time).
    pub fn extend(&mut self, other: Fields) {
        self.add.extend(other.add);
        self.remove.extend(other.remove);
    }

    pub fn refs(&self) -> Refs {
        self.add
            .iter()
            .fold(Refs::default(), |r, (_, e)| r.union(e.references()))
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// Whether a default field must be dropped: removed, or overridden by `add`.
    pub fn drops(&self, key: &str) -> bool {
        self.remove.iter().any(|r| r == key) || self.add.iter().any(|(k, _)| k == key)
    }

    /// Evaluates every `add` entry into `out`, calling `on_eval` per field. Keys in `remove`
    /// are never added.
    pub fn eval_into(
        &self,
        exec: &Executor,
        out: &mut Attrs,
        mut on_eval: impl FnMut(&str, FieldOutcome),
    ) {
        for (name, expr) in &self.add {
            let outcome = match exec.eval(expr) {
                Ok(v) => {
                    let before = out.len();
                    let changed = if let Some((mode, inner)) = cel::as_flatten(&v) {
                        flatten_into(name, inner, mode, 0, out);
                        out.len() != before
                    } else if let Some(a) = to_attr(&v) {
                        upsert(out, name.clone(), a);
                        true
                    } else {
                        false
                    };
                    if changed {
                        FieldOutcome::Added
                    } else {
                        FieldOutcome::Absent
                    }
                }
                Err(CelError::Missing(_)) => FieldOutcome::Absent,
                Err(e) => FieldOutcome::Error(e),
            };
            on_eval(name, outcome);
        }
        if !self.remove.is_empty() {
            out.retain(|(k, _)| !self.remove.iter().any(|r| r == k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::RequestLog;

    fn eval(pairs: &[(&str, &str)], log: &RequestLog) -> Attrs<'static> {
        let add = OrderedExprMap(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let f = Fields::compile(&add, &[], "t").expect("compiles");
        let exec = Executor::new(log, f.refs());
        let mut out = Attrs::new();
        f.eval_into(&exec, &mut out, |_, _| {});
        out
    }

    #[test]
    fn flatten_one_level_keeps_nested_as_json() {
        let log = RequestLog::new("g".into(), "l".into());
        let out = eval(&[("x", r#"flatten({"a": 1, "b": {"c": 2}})"#)], &log);
        assert_eq!(
            out,
            vec![
                ("x.a".into(), AttrValue::Int(1)),
                ("x.b".into(), AttrValue::from(r#"{"c":2}"#))
            ]
        );
    }

    #[test]
    fn flatten_recursive_indexes_lists() {
        let log = RequestLog::new("g".into(), "l".into());
        let out = eval(
            &[(
                "p",
                r#"flatten_recursive([{"role": "user", "content": "hi"}, {"n": [true]}])"#,
            )],
            &log,
        );
        assert_eq!(
            out,
            vec![
                ("p.0.content".into(), AttrValue::from("hi")),
                ("p.0.role".into(), AttrValue::from("user")),
                ("p.1.n.0".into(), AttrValue::Bool(true)),
            ]
        );
        let camel = eval(&[("p", r#"flattenRecursive({"a": {"b": 1.5}})"#)], &log);
        assert_eq!(camel, vec![("p.a.b".into(), AttrValue::F64(1.5))]);
    }

    #[test]
    fn null_and_missing_are_omitted_and_remove_applies() {
        let log = RequestLog::new("g".into(), "l".into());
        let add = OrderedExprMap(vec![
            ("a".into(), "null".into()),
            ("b".into(), "llm.provider".into()),
            ("c".into(), "1 + 1".into()),
            ("d".into(), "'x'".into()),
        ]);
        let f = Fields::compile(&add, &["d".to_string()], "t").expect("compiles");
        let exec = Executor::new(&log, f.refs());
        let mut out = Attrs::new();
        let mut outcomes = Vec::new();
        f.eval_into(&exec, &mut out, |k, o| {
            outcomes.push((k.to_string(), matches!(o, FieldOutcome::Absent)))
        });
        assert_eq!(out, vec![("c".into(), AttrValue::Int(2))]);
        assert_eq!(outcomes[0], ("a".to_string(), true));
        assert_eq!(outcomes[1], ("b".to_string(), true));
        assert!(f.drops("c") && f.drops("d") && !f.drops("e"));
    }

    #[test]
    fn compile_error_names_the_field_path() {
        let add = OrderedExprMap(vec![("gen_ai.request".into(), "flatten(llm.params".into())]);
        let err = Fields::compile(&add, &[], "config.tracing.fields.add").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                r#"config.tracing.fields.add["gen_ai.request"]: invalid CEL expression"#
            ),
            "{msg}"
        );
    }
}
