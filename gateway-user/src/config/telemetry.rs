//! Raw (serde) types for `config.tracing`, `config.logging`, `config.metrics` and the
//! `frontendPolicies.tracing` policy form. Owned by the telemetry subsystem.
//!
//! These types only describe the YAML; `telemetry::settings` validates them (endpoints, CEL)
//! and reports errors with their YAML path. Shapes follow agentgateway's standalone schema,
//! plus the Kubernetes CRD list form (`[{name, expression}]`) for `resources` and
//! `attributes.add`, so seed documents can be pasted verbatim.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// `config.tracing`: the process-wide OTLP trace exporter (applied at startup only).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTracing {
    /// Collector URL: `http://host:4317`, `https://host/api/public/otel`, or `grpc://host:4317`
    /// (treated as plain-text gRPC). For `otlpProtocol: http` a path in the URL is kept and
    /// `/v1/traces` appended. When unset, `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT` is used.
    pub otlp_endpoint: Option<String>,
    /// Extra headers (gRPC metadata for `grpc`) sent with every export, e.g. `Authorization`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `grpc` (default) or `http` (protobuf over HTTP).
    pub otlp_protocol: Option<RawProtocol>,
    /// Span attributes to add (ordered CEL map) and default attribute names to remove.
    pub fields: Option<RawFields>,
    /// Sampling for requests without an incoming trace: bool, 0..1 ratio, or CEL. Default false.
    pub random_sampling: Option<StringBoolFloat>,
    /// Sampling for requests with an incoming `traceparent`: bool, ratio, or CEL. Default true.
    pub client_sampling: Option<StringBoolFloat>,
    /// OTLP/HTTP path; default `/v1/traces` (appended to the endpoint's own path).
    pub path: Option<String>,
    /// Our extension: more trace destinations, each with its own exporter and queue (a dead one
    /// never slows or empties the others). `otlpEndpoint` may then be left out.
    #[serde(default)]
    pub destinations: Vec<RawDestination>,
    /// Our extension: the attribute convention of the spans sent to `otlpEndpoint` (see
    /// `RawDestination::convention`).
    pub convention: Option<RawConvention>,
}

/// One entry of `config.tracing.destinations` (our extension; agentgateway exports to one
/// collector). Requests are traced by the block's own sampling; a destination then keeps all
/// of those traces or, with `sampling`, a share of them chosen by trace id (a trace's spans
/// go together), and only the requests its `filter` keeps.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawDestination {
    /// Names the destination in metrics (`destination` label) and logs.
    pub name: String,
    pub otlp_endpoint: String,
    pub otlp_protocol: Option<RawProtocol>,
    /// OTLP/HTTP path; default `/v1/traces`.
    pub path: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The destination's own span attributes instead of the block's `fields`.
    pub fields: Option<RawFields>,
    /// CEL with keep semantics, as `frontendPolicies.tracing.filter`.
    pub filter: Option<String>,
    /// Share of traced requests (0..1) this destination receives; default 1.
    pub sampling: Option<f64>,
    /// Attribute convention: `genai` (default: OpenTelemetry GenAI semantic conventions) or
    /// `openinference` (adds the OpenInference names Phoenix and Arize read).
    pub convention: Option<RawConvention>,
}

/// `config.tracing.destinations[].convention`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum RawConvention {
    #[default]
    #[serde(rename = "genai", alias = "GenAI")]
    GenAi,
    #[serde(rename = "openinference", alias = "OpenInference")]
    OpenInference,
}

/// OTLP transport. Accepts agentgateway's lowercase and the CRD's uppercase spellings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum RawProtocol {
    #[default]
    #[serde(alias = "GRPC", alias = "Grpc", rename = "grpc")]
    Grpc,
    #[serde(
        alias = "HTTP",
        alias = "Http",
        alias = "http/protobuf",
        rename = "http"
    )]
    Http,
}

/// `fields` block shared by tracing and logging.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawFields {
    /// Field names to drop from the defaults (and from `add`).
    #[serde(default)]
    pub remove: Vec<String>,
    /// Field name → CEL expression, evaluated in order. Accepts a map or a `[{name, expression}]`
    /// list.
    #[serde(default)]
    pub add: OrderedExprMap,
}

/// `frontendPolicies.accessLog.otlp` (agentgateway's `OtlpLoggingConfig`): every access-log
/// record also goes to an OTLP logs endpoint.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawOtlpLogging {
    /// `host:port` (or a URL) of the collector.
    pub host: Option<String>,
    /// agentgateway's `service` / `backend` targets: refused (use `host`).
    pub service: Option<yaml_serde::Value>,
    pub backend: Option<yaml_serde::Value>,
    /// agentgateway's backend policies for the connection: refused.
    pub policies: Option<yaml_serde::Value>,
    /// CEL: only requests where it is `true` are exported.
    pub filter: Option<String>,
    /// Fields of the OTLP records; the access log's when unset.
    pub fields: Option<RawFields>,
    /// `grpc` (default) or `http`.
    pub protocol: Option<RawProtocol>,
    /// HTTP path (default `/v1/logs`).
    pub path: Option<String>,
}

/// A sampling knob: YAML bool, YAML number (ratio 0..1), or a CEL expression string.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StringBoolFloat {
    Bool(bool),
    Float(f64),
    String(String),
}

/// `config.logging`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawLogging {
    /// CEL keep-filter for access log lines: only requests where it evaluates to `true` log.
    pub filter: Option<String>,
    /// Access log fields to add (CEL) and default fields to remove.
    pub fields: Option<RawFields>,
    /// Log level filter, e.g. `info` or `info,gateway=debug`. A YAML list is joined with commas.
    #[serde(default, deserialize_with = "de_level")]
    pub level: Option<String>,
    /// `text` (default) or `json`.
    pub format: Option<String>,
}

/// `frontendPolicies.tracing`: agentgateway's standalone `TracingConfig`, or the Kubernetes
/// `AgentgatewayPolicy.spec.frontend.tracing` shape.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawFrontendTracing {
    /// Collector as `host:port` (or a URL).
    pub host: Option<String>,
    /// Collector as a service: `{name: ns/hostname, port}`.
    pub service: Option<RawServiceRef>,
    /// Collector named by a top-level backend; accepted when it is a `host:port`.
    pub backend: Option<String>,
    /// Kubernetes form: `{name, namespace, port}`; resolved as `name[.namespace]:port`.
    pub backend_ref: Option<RawBackendRef>,
    /// Accepted for compatibility; backend policies for the collector connection are ignored.
    pub policies: Option<yaml_serde::Value>,
    /// Span attributes: an ordered `name: expr` map, or `{add: ..., remove: [...]}`.
    #[serde(default)]
    pub attributes: RawAttributes,
    /// Resource attributes (e.g. `service.name`), CEL evaluated once at startup.
    #[serde(default)]
    pub resources: OrderedExprMap,
    /// Default attribute names to drop.
    #[serde(default)]
    pub remove: Vec<String>,
    pub random_sampling: Option<StringBoolFloat>,
    pub client_sampling: Option<StringBoolFloat>,
    /// CEL keep-filter: only spans of requests where it is `true` are exported.
    pub filter: Option<String>,
    /// OTLP/HTTP path; default `/v1/traces`.
    pub path: Option<String>,
    /// `grpc` (default) or `http`; `GRPC`/`HTTP` also accepted.
    pub protocol: Option<RawProtocol>,
}

/// `service: {name, port}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawServiceRef {
    pub name: String,
    pub port: u16,
}

/// `backendRef: {name, namespace, port}` (Kubernetes policy form).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawBackendRef {
    pub name: String,
    pub namespace: Option<String>,
    pub port: Option<u16>,
    pub group: Option<String>,
    pub kind: Option<String>,
}

/// Span attributes of the policy form.
#[derive(Clone, Debug, Default)]
pub struct RawAttributes {
    pub add: OrderedExprMap,
    pub remove: Vec<String>,
}

/// Ordered `name → CEL` pairs: YAML order is the evaluation and export order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderedExprMap(pub Vec<(String, String)>);

// === impl OrderedExprMap ===

impl<'de> Deserialize<'de> for OrderedExprMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedExprMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of name to CEL expression, or a list of {name, expression}")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OrderedExprMap::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, ExprString>()? {
                    if out.iter().any(|(n, _)| *n == k) {
                        return Err(de::Error::custom(format!("duplicate field {k:?}")));
                    }
                    out.push((k, v.0));
                }
                Ok(OrderedExprMap(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some(e) = s.next_element::<NamedExpr>()? {
                    if out.iter().any(|(n, _)| *n == e.name) {
                        return Err(de::Error::custom(format!("duplicate field {:?}", e.name)));
                    }
                    out.push((e.name, e.expression.0));
                }
                Ok(OrderedExprMap(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One `{name, expression}` list entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedExpr {
    name: String,
    expression: ExprString,
}

/// A CEL source. YAML scalars that are not strings (`true`, `1`) are taken as their CEL literal,
/// since YAML users write `llm.is_streaming: true` and mean the expression `true`.
struct ExprString(String);

impl<'de> Deserialize<'de> for ExprString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ExprString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a CEL expression string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ExprString(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(ExprString(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ExprString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ExprString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ExprString(format!("{v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

// === impl RawAttributes ===

impl<'de> Deserialize<'de> for RawAttributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `{add: ..., remove: [...]}` (CRD form) vs. a plain ordered map (standalone form). A
        // plain map whose only keys are `add`/`remove` is read as the CRD form: a span attribute
        // literally named `add` is not worth the ambiguity.
        let value = yaml_serde::Value::deserialize(d)?;
        let is_crd = match &value {
            yaml_serde::Value::Mapping(m) => {
                !m.is_empty()
                    && m.keys()
                        .all(|k| matches!(k.as_str(), Some("add") | Some("remove")))
                    && m.values().all(|v| !v.is_string())
            }
            _ => false,
        };
        if is_crd {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Crd {
                #[serde(default)]
                add: OrderedExprMap,
                #[serde(default)]
                remove: Vec<String>,
            }
            let c: Crd = yaml_serde::from_value(value).map_err(de::Error::custom)?;
            Ok(RawAttributes {
                add: c.add,
                remove: c.remove,
            })
        } else {
            let add: OrderedExprMap = yaml_serde::from_value(value).map_err(de::Error::custom)?;
            Ok(RawAttributes {
                add,
                remove: Vec::new(),
            })
        }
    }
}

fn de_level<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Level {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Level>::deserialize(d)? {
        None => None,
        Some(Level::One(s)) => Some(s),
        Some(Level::Many(v)) => Some(v.join(",")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracing(yaml: &str) -> RawTracing {
        yaml_serde::from_str(yaml).expect("parses")
    }

    #[test]
    fn seed_langfuse_block_parses_in_order() {
        let t = tracing(
            r#"
otlpEndpoint: https://us.cloud.langfuse.com/api/public/otel
otlpProtocol: http
headers:
  Authorization: "Basic abc"
randomSampling: true
fields:
  add:
    gen_ai.operation.name: '"chat"'
    gen_ai.system: "llm.provider"
    gen_ai.prompt: "llm.prompt"
    gen_ai.request: "flatten(llm.params)"
"#,
        );
        assert_eq!(t.otlp_protocol, Some(RawProtocol::Http));
        assert_eq!(t.random_sampling, Some(StringBoolFloat::Bool(true)));
        let names: Vec<_> = t
            .fields
            .unwrap()
            .add
            .0
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            names,
            [
                "gen_ai.operation.name",
                "gen_ai.system",
                "gen_ai.prompt",
                "gen_ai.request"
            ]
        );
    }

    #[test]
    fn sampling_accepts_float_and_string() {
        let t = tracing("randomSampling: 0.25\nclientSampling: 'request.path == \"/x\"'");
        assert_eq!(t.random_sampling, Some(StringBoolFloat::Float(0.25)));
        assert_eq!(
            t.client_sampling,
            Some(StringBoolFloat::String("request.path == \"/x\"".into()))
        );
    }

    #[test]
    fn unknown_tracing_field_is_rejected_with_path() {
        let de = yaml_serde::Deserializer::from_str("fields:\n  ad: {}\n");
        let err = serde_path_to_error::deserialize::<_, RawTracing>(de).unwrap_err();
        assert!(
            err.path().to_string().starts_with("fields"),
            "{}",
            err.path()
        );
        assert!(err.to_string().contains("unknown field `ad`"), "{err}");
    }

    #[test]
    fn crd_policy_form_parses() {
        let p: RawFrontendTracing = yaml_serde::from_str(
            r#"
backendRef:
  name: opentelemetry-collector-traces
  namespace: monitoring
  port: 4317
protocol: GRPC
clientSampling: "true"
randomSampling: "true"
resources:
- name: deployment.environment
  expression: '"development"'
- name: service.name
  expression: '"agentgateway"'
attributes:
  add:
  - name: request.host
    expression: 'request.host'
"#,
        )
        .expect("parses");
        assert_eq!(p.protocol, Some(RawProtocol::Grpc));
        assert_eq!(p.resources.0.len(), 2);
        assert_eq!(
            p.resources.0[1],
            ("service.name".into(), "\"agentgateway\"".into())
        );
        assert_eq!(
            p.attributes.add.0,
            vec![("request.host".into(), "request.host".into())]
        );
        assert_eq!(p.backend_ref.unwrap().port, Some(4317));
    }

    #[test]
    fn standalone_policy_form_parses() {
        let p: RawFrontendTracing = yaml_serde::from_str(
            "host: 127.0.0.1:4317\nattributes:\n  b: '1'\n  a: '2'\nresources:\n  service.name: '\"gw\"'\nremove: [http.host]\n",
        )
        .expect("parses");
        assert_eq!(p.attributes.add.0[0].0, "b");
        assert_eq!(p.remove, vec!["http.host".to_string()]);
    }

    #[test]
    fn logging_level_list_is_joined() {
        let l: RawLogging =
            yaml_serde::from_str("level: [info, gateway=debug]\nformat: json").expect("parses");
        assert_eq!(l.level.as_deref(), Some("info,gateway=debug"));
    }

    #[test]
    fn duplicate_field_is_an_error() {
        let r: Result<RawFields, _> = yaml_serde::from_str(
            "add:\n- {name: a, expression: '1'}\n- {name: a, expression: '2'}",
        );
        assert!(r.unwrap_err().to_string().contains("duplicate field"));
    }
}
