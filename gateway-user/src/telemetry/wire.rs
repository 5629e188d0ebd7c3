//! OTLP spans on the wire, built straight from the request record.
//!
//! Each span is written once, on the `telemetry` thread, as one `spans` entry of a
//! `ScopeSpans` message (the OpenTelemetry project's `opentelemetry-proto` schema), field by
//! field from the request's attributes: no proto structs or owned copies of keys and values
//! are built on the way (`append_span`; a test proves the bytes equal prost's encoding of the
//! `opentelemetry-proto` message). The export task then only frames a batch: the
//! `ExportTraceServiceRequest` envelope (resource and scope, encoded once at start-up by
//! prost) around the concatenated entries, into a reused buffer.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use super::fields::{AttrKey, AttrValue};
use super::spans::SpanRec;

/// `ExportTraceServiceRequest.resource_spans`, `ResourceSpans.resource`,
/// `ResourceSpans.scope_spans`, `ScopeSpans.scope`, `ScopeSpans.spans`.
const RESOURCE_SPANS: u32 = 1;
const RESOURCE: u32 = 1;
const SCOPE_SPANS: u32 = 2;
const SCOPE: u32 = 1;
const SPANS: u32 = 2;

/// One attribute in wire form.
pub fn kv(k: AttrKey, v: AttrValue) -> KeyValue {
    let value = match v {
        AttrValue::Str(s) => any_value::Value::StringValue(s.into_owned()),
        AttrValue::Int(i) => any_value::Value::IntValue(i),
        AttrValue::F64(f) => any_value::Value::DoubleValue(f),
        AttrValue::Bool(b) => any_value::Value::BoolValue(b),
        AttrValue::StrList(l) => any_value::Value::ArrayValue(ArrayValue {
            values: l
                .into_iter()
                .map(|s| AnyValue {
                    value: Some(any_value::Value::StringValue(s)),
                })
                .collect(),
        }),
    };
    KeyValue {
        key: k.into_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// An OpenTelemetry API value in wire form (resource attributes).
pub fn otel_value(v: &opentelemetry::Value) -> AnyValue {
    use opentelemetry::{Array, Value};
    let value = match v {
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::I64(i) => any_value::Value::IntValue(*i),
        Value::F64(f) => any_value::Value::DoubleValue(*f),
        Value::String(s) => any_value::Value::StringValue(s.as_str().to_owned()),
        Value::Array(a) => {
            let values = match a {
                Array::Bool(v) => v.iter().map(|b| any_value::Value::BoolValue(*b)).collect(),
                Array::I64(v) => v.iter().map(|i| any_value::Value::IntValue(*i)).collect(),
                Array::F64(v) => v
                    .iter()
                    .map(|f| any_value::Value::DoubleValue(*f))
                    .collect(),
                Array::String(v) => v
                    .iter()
                    .map(|s| any_value::Value::StringValue(s.as_str().to_owned()))
                    .collect(),
                _ => Vec::new(),
            };
            any_value::Value::ArrayValue(ArrayValue {
                values: values
                    .into_iter()
                    .map(|v: any_value::Value| AnyValue { value: Some(v) })
                    .collect(),
            })
        }
        other => any_value::Value::StringValue(other.to_string()),
    };
    AnyValue { value: Some(value) }
}

/// The SDK resource in wire form.
pub fn resource(r: &opentelemetry_sdk::Resource) -> Resource {
    Resource {
        attributes: r
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.as_str().to_owned(),
                value: Some(otel_value(v)),
                ..KeyValue::default()
            })
            .collect(),
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    }
}

/// Appends `span` to `buf` as one `ScopeSpans.spans` entry, written field by field straight
/// from its attributes: the bytes prost writes for `span.to_proto()` (a test below checks),
/// without building the proto message and its owned strings first. `scratch` holds the span's
/// body while its length is not yet known; it is reused across spans.
pub fn append_span(span: &SpanRec, buf: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    scratch.clear();
    let b = scratch;
    bytes_field(1, &span.trace_id, b);
    bytes_field(2, &span.span_id, b);
    if let Some(p) = &span.parent_span_id {
        bytes_field(4, p, b);
    }
    if !span.name.is_empty() {
        bytes_field(5, span.name.as_bytes(), b);
    }
    if span.kind as i32 != 0 {
        encode_key(6, WireType::Varint, b);
        encode_varint(span.kind as u64, b);
    }
    for (tag, t) in [(7, span.start_unix_nano), (8, span.end_unix_nano)] {
        if t != 0 {
            encode_key(tag, WireType::SixtyFourBit, b);
            b.extend_from_slice(&t.to_le_bytes());
        }
    }
    for (k, v) in &span.attrs {
        append_kv(9, k, v, b);
    }
    // `Span.status`: always present (prost writes a set optional message even when empty).
    let msg = span.status_message.as_bytes();
    let code = span.status as i32;
    let status_len = if msg.is_empty() {
        0
    } else {
        len_field_len(2, msg.len())
    } + if code == 0 {
        0
    } else {
        key_len(3) + encoded_len_varint(code as u64)
    };
    encode_key(15, WireType::LengthDelimited, b);
    encode_varint(status_len as u64, b);
    if !msg.is_empty() {
        bytes_field(2, msg, b);
    }
    if code != 0 {
        encode_key(3, WireType::Varint, b);
        encode_varint(code as u64, b);
    }
    if span.flags != 0 {
        encode_key(16, WireType::ThirtyTwoBit, b);
        b.extend_from_slice(&span.flags.to_le_bytes());
    }
    encode_key(SPANS, WireType::LengthDelimited, buf);
    encode_varint(b.len() as u64, buf);
    buf.extend_from_slice(b);
}

/// A length-delimited field: key, length, bytes.
fn bytes_field(tag: u32, v: &[u8], b: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, b);
    encode_varint(v.len() as u64, b);
    b.extend_from_slice(v);
}

/// Encoded size of a length-delimited field whose content is `len` bytes.
fn len_field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// Size of an `AnyValue` message's content holding `v`.
fn any_value_len(v: &AttrValue) -> usize {
    match v {
        AttrValue::Str(s) => len_field_len(1, s.len()),
        AttrValue::Bool(_) => key_len(2) + 1,
        AttrValue::Int(i) => key_len(3) + encoded_len_varint(*i as u64),
        AttrValue::F64(_) => key_len(4) + 8,
        AttrValue::StrList(l) => len_field_len(5, array_len(l)),
    }
}

/// Size of an `ArrayValue` message's content holding string values `l`.
fn array_len(l: &[String]) -> usize {
    l.iter()
        .map(|s| len_field_len(1, len_field_len(1, s.len())))
        .sum()
}

/// Appends a `KeyValue` as field `tag`.
fn append_kv(tag: u32, k: &str, v: &AttrValue, b: &mut Vec<u8>) {
    let any = any_value_len(v);
    let kv = if k.is_empty() {
        0
    } else {
        len_field_len(1, k.len())
    } + len_field_len(2, any);
    encode_key(tag, WireType::LengthDelimited, b);
    encode_varint(kv as u64, b);
    if !k.is_empty() {
        bytes_field(1, k.as_bytes(), b);
    }
    encode_key(2, WireType::LengthDelimited, b);
    encode_varint(any as u64, b);
    match v {
        AttrValue::Str(s) => bytes_field(1, s.as_bytes(), b),
        AttrValue::Bool(x) => {
            encode_key(2, WireType::Varint, b);
            b.push(u8::from(*x));
        }
        AttrValue::Int(i) => {
            encode_key(3, WireType::Varint, b);
            encode_varint(*i as u64, b);
        }
        AttrValue::F64(f) => {
            encode_key(4, WireType::SixtyFourBit, b);
            b.extend_from_slice(&f.to_le_bytes());
        }
        AttrValue::StrList(l) => {
            encode_key(5, WireType::LengthDelimited, b);
            encode_varint(array_len(l) as u64, b);
            for s in l {
                encode_key(1, WireType::LengthDelimited, b);
                encode_varint(len_field_len(1, s.len()) as u64, b);
                bytes_field(1, s.as_bytes(), b);
            }
        }
    }
}

/// Appends `record` to `buf` as one `ScopeLogs.log_records` entry (the logs request has the
/// traces request's layout: the same field numbers down to the entries).
pub fn append_record(record: &opentelemetry_proto::tonic::logs::v1::LogRecord, buf: &mut Vec<u8>) {
    prost::encoding::message::encode(SPANS, record, buf);
}

/// The envelope every batch is framed in: resource and scope, encoded once.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// `ResourceSpans.resource`, key and length included.
    resource: Vec<u8>,
    /// `ScopeSpans.scope`, key and length included.
    scope: Vec<u8>,
}

impl Envelope {
    pub fn new(resource: &Resource, scope: &InstrumentationScope) -> Envelope {
        let mut r = Vec::with_capacity(resource.encoded_len() + 8);
        prost::encoding::message::encode(RESOURCE, resource, &mut r);
        let mut s = Vec::with_capacity(scope.encoded_len() + 8);
        prost::encoding::message::encode(SCOPE, scope, &mut s);
        Envelope {
            resource: r,
            scope: s,
        }
    }

    /// `ExportTraceServiceRequest` bytes for `spans` (concatenated `append_span` entries),
    /// written into `out` after clearing it.
    pub fn request(&self, spans: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let scope_spans = self.scope.len() + spans.len();
        let resource_spans = self.resource.len()
            + key_len(SCOPE_SPANS)
            + encoded_len_varint(scope_spans as u64)
            + scope_spans;
        out.reserve(
            key_len(RESOURCE_SPANS) + encoded_len_varint(resource_spans as u64) + resource_spans,
        );
        encode_key(RESOURCE_SPANS, WireType::LengthDelimited, out);
        encode_varint(resource_spans as u64, out);
        out.extend_from_slice(&self.resource);
        encode_key(SCOPE_SPANS, WireType::LengthDelimited, out);
        encode_varint(scope_spans as u64, out);
        out.extend_from_slice(&self.scope);
        out.extend_from_slice(spans);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    #[test]
    fn framed_batches_decode_as_prost_would_encode_them() {
        let resource = Resource {
            attributes: vec![kv("service.name".into(), "agentgateway".into())],
            ..Resource::default()
        };
        let scope = InstrumentationScope {
            name: "gateway".into(),
            version: "1".into(),
            ..InstrumentationScope::default()
        };
        let spans: Vec<Span> = (0..3u8)
            .map(|i| Span {
                trace_id: vec![i; 16],
                span_id: vec![i; 8],
                name: format!("span {i}"),
                attributes: vec![kv("n".into(), AttrValue::Int(i64::from(i)))],
                ..Span::default()
            })
            .collect();
        let mut buf = Vec::new();
        for s in &spans {
            prost::encoding::message::encode(SPANS, s, &mut buf);
        }
        let mut out = Vec::new();
        Envelope::new(&resource, &scope).request(&buf, &mut out);
        let want = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        assert_eq!(
            out,
            want.encode_to_vec(),
            "byte for byte what prost encodes"
        );
        assert_eq!(
            ExportTraceServiceRequest::decode(out.as_slice()).unwrap(),
            want
        );
    }

    /// What `append_span` writes for `rec`, and what prost writes for the proto message.
    fn both(rec: &SpanRec) -> (Vec<u8>, Vec<u8>) {
        let (mut direct, mut scratch) = (Vec::new(), Vec::new());
        append_span(rec, &mut direct, &mut scratch);
        let mut prost_bytes = Vec::new();
        prost::encoding::message::encode(SPANS, &rec.to_proto(), &mut prost_bytes);
        (direct, prost_bytes)
    }

    #[test]
    fn spans_written_directly_are_prosts_encoding_for_every_value_kind() {
        use opentelemetry_proto::tonic::trace::v1::{span, status};
        let big = "x".repeat(300);
        let rec = SpanRec {
            trace_id: [0xab; 16],
            span_id: [1; 8],
            parent_span_id: Some([2; 8]),
            flags: 0x301,
            name: "chat gpt-4o".into(),
            kind: span::SpanKind::Client,
            start_unix_nano: 1_700_000_000_000_000_000,
            end_unix_nano: 1_700_000_000_500_000_000,
            attrs: vec![
                ("s".into(), "text".into()),
                ("empty".into(), "".into()),
                ("long".into(), big.as_str().into()),
                ("".into(), AttrValue::Int(1)),
                ("zero".into(), AttrValue::Int(0)),
                ("neg".into(), AttrValue::Int(-42)),
                ("max".into(), AttrValue::Int(i64::MAX)),
                ("f".into(), AttrValue::F64(0.7)),
                ("t".into(), AttrValue::Bool(true)),
                ("no".into(), AttrValue::Bool(false)),
                (
                    "list".into(),
                    AttrValue::StrList(vec!["a".into(), String::new(), big.clone()]),
                ),
                ("none".into(), AttrValue::StrList(Vec::new())),
            ],
            status: status::StatusCode::Error,
            status_message: "upstream said no".into(),
        };
        let (direct, want) = both(&rec);
        assert_eq!(direct, want);
        // The defaults prost leaves out: no parent, no name, kind and times 0, status unset.
        let bare = SpanRec {
            parent_span_id: None,
            flags: 0,
            name: String::new(),
            kind: span::SpanKind::Unspecified,
            start_unix_nano: 0,
            end_unix_nano: 0,
            attrs: Vec::new(),
            status: status::StatusCode::Unset,
            status_message: String::new(),
            ..rec
        };
        let (direct, want) = both(&bare);
        assert_eq!(direct, want);
    }
}
