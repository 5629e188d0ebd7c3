//! OTLP spans on the wire, built straight from the request record.
//!
//! Spans are the OpenTelemetry project's own protobuf types (`opentelemetry-proto`), each
//! encoded once by prost, on the `telemetry` thread, as one `spans` entry of a `ScopeSpans`
//! message. The export task then only frames a batch: the `ExportTraceServiceRequest`
//! envelope (resource and scope, encoded once at start-up) around the concatenated entries,
//! into a reused buffer. Nothing is converted, cloned or measured twice on the way out, which
//! is what opentelemetry-otlp's `SpanData` path did per span.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use super::fields::{AttrKey, AttrValue};

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
        AttrValue::Str(s) => any_value::Value::StringValue(s.as_str().to_owned()),
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

/// Appends `span` to `buf` as one `ScopeSpans.spans` entry.
pub fn append_span(span: &Span, buf: &mut Vec<u8>) {
    prost::encoding::message::encode(SPANS, span, buf);
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
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

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
            append_span(s, &mut buf);
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
}
