//! Resolves `config.tracing`, `frontendPolicies.tracing` and the standard `OTEL_*` environment
//! variables into one validated tracing setup.
//!
//! Precedence: `frontendPolicies.tracing` (collector, protocol, sampling, attributes) over
//! `config.tracing`, over the environment. With only `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`
//! set, tracing is on and every request is sampled (agentgateway's behaviour for env-only
//! setups). Explicit config headers are merged over `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`.

use crate::config::telemetry::{
    OrderedExprMap, RawConvention, RawFields, RawFrontendTracing, RawProtocol, RawTracing,
    StringBoolFloat,
};

use super::TelemetryError;

/// Where and how spans are exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    pub protocol: RawProtocol,
    /// gRPC: `scheme://authority`. HTTP: the full URL spans are POSTed to.
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// The name of the destination `otlpEndpoint` (or the environment) describes.
pub const PRIMARY: &str = "default";

/// One place spans go, with what it keeps of them.
#[derive(Clone, Debug)]
pub struct Destination {
    /// `default` for the block's own collector, else `destinations[].name`.
    pub name: String,
    pub export: Export,
    /// `(yaml path of the add map, fields)`: the destination's own attributes.
    pub fields: Option<(String, RawFields)>,
    /// `(yaml path, CEL)`.
    pub filter: Option<(String, String)>,
    /// Share of traced requests kept, 0..=1.
    pub sampling: Option<f64>,
    pub convention: RawConvention,
}

/// Everything tracing needs, before CEL compilation.
#[derive(Debug)]
pub struct TracingSettings {
    /// Where spans go: the block's collector first (when it has one), then `destinations`.
    pub dests: Vec<Destination>,
    /// `(yaml path of the map, entries)`; compiled in order, later entries override.
    pub add: Vec<(String, OrderedExprMap)>,
    pub remove: Vec<String>,
    pub random: Option<(String, StringBoolFloat)>,
    pub client: Option<(String, StringBoolFloat)>,
    pub filter: Option<(String, String)>,
    pub resources: Vec<(String, String)>,
    pub service_name: Option<String>,
    /// From `OTEL_RESOURCE_ATTRIBUTES`.
    pub env_resources: Vec<(String, String)>,
}

pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A sampling setting and the YAML path (or environment variable) it came from.
type Sampling = (String, StringBoolFloat);

pub(super) fn env_nonempty(env: Env, k: &str) -> Option<String> {
    env(k).filter(|v| !v.trim().is_empty())
}

/// Decodes `%XX` escapes (OTLP header and resource values are URL-encoded).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(hex) = b.get(i + 1..i + 3)
            && let Some(v) = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `k1=v1,k2=v2` (W3C baggage-like, values URL-encoded).
pub fn parse_kv_list(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (percent_decode(k), percent_decode(v.trim())))
        })
        .collect()
}

/// The OTLP protocol the environment names: the signal's own variable (e.g.
/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`), then `OTEL_EXPORTER_OTLP_PROTOCOL`.
pub(super) fn protocol_from_env(
    env: Env,
    signal_var: &'static str,
) -> Result<Option<RawProtocol>, TelemetryError> {
    for var in [signal_var, "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        if let Some(v) = env_nonempty(env, var) {
            return match v.trim() {
                "grpc" => Ok(Some(RawProtocol::Grpc)),
                "http/protobuf" | "http" => Ok(Some(RawProtocol::Http)),
                other => Err(TelemetryError::Invalid {
                    path: var.to_owned(),
                    value: other.to_owned(),
                    msg: "supported values are `grpc` and `http/protobuf`".into(),
                }),
            };
        }
    }
    Ok(None)
}

/// Splits `scheme://authority/path` and validates it. `grpc://` means plain-text gRPC and
/// `grpcs://` TLS; a missing scheme means `http://`.
fn split_url(raw: &str, path: &str) -> Result<(String, String, String), TelemetryError> {
    let bad = |msg: &str| TelemetryError::Invalid {
        path: path.to_owned(),
        value: raw.to_owned(),
        msg: msg.to_owned(),
    };
    let raw_t = raw.trim();
    let (scheme, rest) = match raw_t.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("http".to_owned(), raw_t),
    };
    let scheme = match scheme.as_str() {
        "http" | "grpc" => "http",
        "https" | "grpcs" => "https",
        _ => return Err(bad("the scheme must be http, https, grpc or grpcs")),
    };
    let (authority, url_path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(bad("the URL has no host"));
    }
    let uri: http::Uri = format!("{scheme}://{authority}/")
        .parse()
        .map_err(|_| bad("not a valid URL"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("the URL has no host"));
    }
    Ok((
        scheme.to_owned(),
        authority.to_owned(),
        url_path.trim_end_matches('/').to_owned(),
    ))
}

/// Builds the export target. For HTTP, `signal_path` (default `/v1/traces`) is appended to the
/// URL's own path unless the URL already ends with it; `full_url` (a signal-specific env var)
/// is used as-is.
fn export_target(
    raw: &str,
    yaml_path: &str,
    protocol: RawProtocol,
    signal_path: Option<&str>,
    full_url: bool,
) -> Result<String, TelemetryError> {
    let (scheme, authority, path) = split_url(raw, yaml_path)?;
    Ok(match protocol {
        RawProtocol::Grpc => format!("{scheme}://{authority}"),
        RawProtocol::Http if full_url => format!("{scheme}://{authority}{path}"),
        RawProtocol::Http => {
            let sig = signal_path.unwrap_or("/v1/traces");
            let sig = if sig.starts_with('/') {
                sig.to_owned()
            } else {
                format!("/{sig}")
            };
            if path.ends_with(&sig) {
                format!("{scheme}://{authority}{path}")
            } else {
                format!("{scheme}://{authority}{path}{sig}")
            }
        }
    })
}

fn env_endpoint(env: Env) -> Option<(String, &'static str, bool)> {
    if let Some(v) = env_nonempty(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Some((v, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", true));
    }
    env_nonempty(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
        .map(|v| (v, "OTEL_EXPORTER_OTLP_ENDPOINT", false))
}

fn env_headers(env: Env) -> Vec<(String, String)> {
    let mut h = env_nonempty(env, "OTEL_EXPORTER_OTLP_HEADERS")
        .map(|s| parse_kv_list(&s))
        .unwrap_or_default();
    for (k, v) in env_nonempty(env, "OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        .map(|s| parse_kv_list(&s))
        .unwrap_or_default()
    {
        h.retain(|(hk, _)| !hk.eq_ignore_ascii_case(&k));
        h.push((k, v));
    }
    h
}

/// Target of the policy form: `host`, `service`, `backend` (as `host:port`) or `backendRef`.
fn policy_target(p: &RawFrontendTracing, base: &str) -> Result<(String, String), TelemetryError> {
    if let Some(h) = &p.host {
        return Ok((h.clone(), format!("{base}.host")));
    }
    if let Some(s) = &p.service {
        // `ns/hostname` → hostname.
        let host = s.name.rsplit('/').next().unwrap_or(&s.name);
        return Ok((format!("{host}:{}", s.port), format!("{base}.service")));
    }
    if let Some(b) = &p.backend {
        if b.contains(':') {
            return Ok((b.clone(), format!("{base}.backend")));
        }
        return Err(TelemetryError::Invalid {
            path: format!("{base}.backend"),
            value: b.clone(),
            msg: "backend references are not resolved for tracing; give `host: <host>:<port>`"
                .into(),
        });
    }
    if let Some(r) = &p.backend_ref {
        let host = match &r.namespace {
            Some(ns) if !r.name.contains('.') => format!("{}.{ns}.svc.cluster.local", r.name),
            _ => r.name.clone(),
        };
        let port = r.port.ok_or_else(|| TelemetryError::Invalid {
            path: format!("{base}.backendRef.port"),
            value: String::new(),
            msg: "a port is required".into(),
        })?;
        return Ok((format!("{host}:{port}"), format!("{base}.backendRef")));
    }
    Err(TelemetryError::Invalid {
        path: base.to_owned(),
        value: String::new(),
        msg: "one of host, service, backend or backendRef is required".into(),
    })
}

/// Returns `None` when tracing is off (no config and no endpoint in the environment).
/// The resource the environment describes: `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`.
pub fn env_resource(env: Env) -> (Vec<(String, String)>, Option<String>) {
    let attrs = env_nonempty(env, "OTEL_RESOURCE_ATTRIBUTES")
        .map(|s| parse_kv_list(&s))
        .unwrap_or_default();
    (attrs, env_nonempty(env, "OTEL_SERVICE_NAME"))
}

pub fn resolve(
    tracing: Option<&RawTracing>,
    policy: Option<&RawFrontendTracing>,
    env: Env,
) -> Result<Option<TracingSettings>, TelemetryError> {
    const T: &str = "config.tracing";
    const P: &str = "frontendPolicies.tracing";
    let env_proto = protocol_from_env(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")?;
    let mut headers = env_headers(env);
    let mut client = None;
    let mut add = Vec::new();
    let mut remove = Vec::new();
    let Some((export, mut random)) = export(tracing, policy, env, env_proto)? else {
        return Ok(None);
    };

    if let Some(t) = tracing {
        for (k, v) in &t.headers {
            headers.retain(|(hk, _)| !hk.eq_ignore_ascii_case(k));
            headers.push((k.clone(), v.clone()));
        }
        if let Some(r) = &t.random_sampling {
            random = Some((format!("{T}.randomSampling"), r.clone()));
        }
        if let Some(c) = &t.client_sampling {
            client = Some((format!("{T}.clientSampling"), c.clone()));
        }
        if let Some(f) = &t.fields {
            add.push((format!("{T}.fields.add"), f.add.clone()));
            remove.extend(f.remove.iter().cloned());
        }
    }
    let mut filter = None;
    let mut resources = Vec::new();
    if let Some(p) = policy {
        if let Some(r) = &p.random_sampling {
            random = Some((format!("{P}.randomSampling"), r.clone()));
        }
        if let Some(c) = &p.client_sampling {
            client = Some((format!("{P}.clientSampling"), c.clone()));
        }
        add.push((format!("{P}.attributes"), p.attributes.add.clone()));
        remove.extend(p.attributes.remove.iter().cloned());
        remove.extend(p.remove.iter().cloned());
        filter = p.filter.clone().map(|f| (format!("{P}.filter"), f));
        resources = p.resources.0.clone();
    }
    let (env_resources, service_name) = env_resource(env);
    let mut dests: Vec<Destination> = export
        .map(|e| Destination {
            name: PRIMARY.into(),
            export: Export { headers, ..e },
            fields: None,
            filter: None,
            sampling: None,
            convention: tracing.and_then(|t| t.convention).unwrap_or_default(),
        })
        .into_iter()
        .collect();
    if let Some(t) = tracing {
        for (i, d) in t.destinations.iter().enumerate() {
            let dest = destination(d, &format!("{T}.destinations[{i}]"))?;
            if dests.iter().any(|x| x.name == dest.name) {
                return Err(TelemetryError::Invalid {
                    path: format!("{T}.destinations[{i}].name"),
                    value: dest.name,
                    msg: format!(
                        "names must be unique (`{PRIMARY}` is the block's own otlpEndpoint)"
                    ),
                });
            }
            dests.push(dest);
        }
    }
    Ok(Some(TracingSettings {
        dests,
        add,
        remove,
        random,
        client,
        filter,
        resources,
        service_name,
        env_resources,
    }))
}

/// Where spans go: `frontendPolicies.tracing`, else `config.tracing` (endpoint from the config
/// or the environment), else the environment alone, which also samples every request (the
/// returned default for `random`). `None` when none of them names a collector.
/// One `config.tracing.destinations` entry, validated.
fn destination(
    d: &crate::config::telemetry::RawDestination,
    base: &str,
) -> Result<Destination, TelemetryError> {
    let ok_name = !d.name.is_empty()
        && d.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok_name {
        return Err(TelemetryError::Invalid {
            path: format!("{base}.name"),
            value: d.name.clone(),
            msg: "a name of letters, digits, `-`, `_` or `.` is required".into(),
        });
    }
    if let Some(r) = d.sampling
        && !(0.0..=1.0).contains(&r)
    {
        return Err(TelemetryError::Invalid {
            path: format!("{base}.sampling"),
            value: r.to_string(),
            msg: "must be between 0 and 1".into(),
        });
    }
    let protocol = d.otlp_protocol.unwrap_or_default();
    let url = export_target(
        &d.otlp_endpoint,
        &format!("{base}.otlpEndpoint"),
        protocol,
        d.path.as_deref(),
        false,
    )?;
    Ok(Destination {
        name: d.name.clone(),
        export: Export {
            protocol,
            url,
            headers: d
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        },
        fields: d.fields.clone().map(|f| (format!("{base}.fields.add"), f)),
        filter: d.filter.clone().map(|f| (format!("{base}.filter"), f)),
        sampling: d.sampling,
        convention: d.convention.unwrap_or_default(),
    })
}

/// The block's own collector (`None` when only `destinations` are given) and the sampling the
/// environment implies; `None` when tracing is off.
#[allow(clippy::type_complexity)]
fn export(
    tracing: Option<&RawTracing>,
    policy: Option<&RawFrontendTracing>,
    env: Env,
    env_proto: Option<RawProtocol>,
) -> Result<Option<(Option<Export>, Option<Sampling>)>, TelemetryError> {
    const T: &str = "config.tracing";
    const P: &str = "frontendPolicies.tracing";
    if let Some(p) = policy {
        if p.policies.is_some() {
            tracing::warn!(
                "{P}.policies is not applied to the collector connection; use an https:// host for TLS"
            );
        }
        let (raw, path) = policy_target(p, P)?;
        let protocol = p.protocol.unwrap_or_default();
        let url = export_target(&raw, &path, protocol, p.path.as_deref(), false)?;
        let export = Export {
            protocol,
            url,
            headers: Vec::new(),
        };
        Ok(Some((Some(export), None)))
    } else if let Some(t) = tracing {
        let protocol = t.otlp_protocol.or(env_proto).unwrap_or_default();
        let (raw, path, full) = match &t.otlp_endpoint {
            Some(e) => (e.clone(), format!("{T}.otlpEndpoint"), false),
            None => match env_endpoint(env) {
                Some((v, var, full)) => (v, var.to_owned(), full),
                None if !t.destinations.is_empty() => return Ok(Some((None, None))),
                None => {
                    return Err(TelemetryError::Invalid {
                        path: format!("{T}.otlpEndpoint"),
                        value: String::new(),
                        msg: "required (or set OTEL_EXPORTER_OTLP_ENDPOINT)".into(),
                    });
                }
            },
        };
        let url = export_target(&raw, &path, protocol, t.path.as_deref(), full)?;
        let export = Export {
            protocol,
            url,
            headers: Vec::new(),
        };
        Ok(Some((Some(export), None)))
    } else if let Some((raw, var, full)) = env_endpoint(env) {
        let protocol = env_proto.unwrap_or_default();
        let url = export_target(&raw, var, protocol, None, full)?;
        let export = Export {
            protocol,
            url,
            headers: Vec::new(),
        };
        Ok(Some((
            Some(export),
            Some((var.to_owned(), StringBoolFloat::Bool(true))),
        )))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn tracing(yaml: &str) -> RawTracing {
        yaml_serde::from_str(yaml).expect("parses")
    }

    #[test]
    fn endpoint_table() {
        let no_env = env_of(&[]);
        for (yaml, proto, url) in [
            (
                "otlpEndpoint: http://localhost:4317",
                RawProtocol::Grpc,
                "http://localhost:4317",
            ),
            (
                "otlpEndpoint: grpc://c.ns.svc:4317\notlpProtocol: grpc",
                RawProtocol::Grpc,
                "http://c.ns.svc:4317",
            ),
            (
                "otlpEndpoint: localhost:4317",
                RawProtocol::Grpc,
                "http://localhost:4317",
            ),
            (
                "otlpEndpoint: https://us.cloud.langfuse.com/api/public/otel\notlpProtocol: http",
                RawProtocol::Http,
                "https://us.cloud.langfuse.com/api/public/otel/v1/traces",
            ),
            (
                "otlpEndpoint: http://h:4318/\notlpProtocol: http",
                RawProtocol::Http,
                "http://h:4318/v1/traces",
            ),
            (
                "otlpEndpoint: http://h:4318/v1/traces\notlpProtocol: http",
                RawProtocol::Http,
                "http://h:4318/v1/traces",
            ),
            (
                "otlpEndpoint: http://h:4318\notlpProtocol: http\npath: /custom/traces",
                RawProtocol::Http,
                "http://h:4318/custom/traces",
            ),
        ] {
            let s = resolve(Some(&tracing(yaml)), None, &no_env)
                .expect(yaml)
                .expect("on");
            assert_eq!(
                (s.dests[0].export.protocol, s.dests[0].export.url.as_str()),
                (proto, url),
                "{yaml}"
            );
        }
    }

    #[test]
    fn bad_endpoint_names_path_and_value() {
        let err = resolve(
            Some(&tracing("otlpEndpoint: ftp://x:1")),
            None,
            &env_of(&[]),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("config.tracing.otlpEndpoint") && msg.contains("ftp://x:1"),
            "{msg}"
        );
    }

    #[test]
    fn env_only_turns_tracing_on_with_full_sampling() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-tenant=a%20b,Authorization=Basic xyz",
            ),
            ("OTEL_SERVICE_NAME", "edge"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=dev,team=ai",
            ),
        ]);
        let s = resolve(None, None, &env).expect("ok").expect("on");
        assert_eq!(s.dests[0].export.url, "http://collector:4317");
        assert_eq!(
            s.random.as_ref().map(|r| &r.1),
            Some(&StringBoolFloat::Bool(true))
        );
        assert_eq!(
            s.dests[0].export.headers[0],
            ("x-tenant".to_string(), "a b".to_string())
        );
        assert_eq!(s.service_name.as_deref(), Some("edge"));
        assert_eq!(s.env_resources.len(), 2);
        assert!(resolve(None, None, &env_of(&[])).expect("ok").is_none());
    }

    #[test]
    fn env_http_protobuf_and_signal_endpoint() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/base"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]);
        let s = resolve(None, None, &env).expect("ok").expect("on");
        assert_eq!(s.dests[0].export.url, "http://c:4318/base/v1/traces");
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/exact"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]);
        let s = resolve(None, None, &env).expect("ok").expect("on");
        assert_eq!(s.dests[0].export.url, "http://c:4318/exact");
        let bad = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ]);
        assert!(
            resolve(None, None, &bad)
                .unwrap_err()
                .to_string()
                .contains("http/json")
        );
    }

    #[test]
    fn config_headers_override_env_headers() {
        let env = env_of(&[("OTEL_EXPORTER_OTLP_HEADERS", "authorization=env")]);
        let t = tracing("otlpEndpoint: http://c:4317\nheaders:\n  Authorization: cfg\n");
        let s = resolve(Some(&t), None, &env).expect("ok").expect("on");
        assert_eq!(
            s.dests[0].export.headers,
            vec![("Authorization".to_string(), "cfg".to_string())]
        );
    }

    #[test]
    fn crd_policy_resolves_backend_ref() {
        let p: RawFrontendTracing = yaml_serde::from_str(
            "backendRef: {name: opentelemetry-collector-traces, namespace: monitoring, port: 4317}\nprotocol: GRPC\nclientSampling: \"true\"\nrandomSampling: \"true\"\n",
        )
        .expect("parses");
        let s = resolve(None, Some(&p), &env_of(&[]))
            .expect("ok")
            .expect("on");
        assert_eq!(
            s.dests[0].export.url,
            "http://opentelemetry-collector-traces.monitoring.svc.cluster.local:4317"
        );
        assert_eq!(
            s.random.map(|r| r.0).as_deref(),
            Some("frontendPolicies.tracing.randomSampling")
        );
        let p: RawFrontendTracing =
            yaml_serde::from_str("backendRef: {name: 127.0.0.1, port: 4317}").expect("parses");
        let s = resolve(None, Some(&p), &env_of(&[]))
            .expect("ok")
            .expect("on");
        assert_eq!(s.dests[0].export.url, "http://127.0.0.1:4317");
    }

    #[test]
    fn destinations_follow_the_primary_or_stand_alone() {
        let no_env = env_of(&[]);
        let s = resolve(
            Some(&tracing(
                "otlpEndpoint: http://a:4317\ndestinations:\n- {name: b, otlpEndpoint: 'https://b/otel', otlpProtocol: http, sampling: 0.5, convention: openinference}",
            )),
            None,
            &no_env,
        )
        .expect("valid")
        .expect("on");
        let names: Vec<_> = s.dests.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, [PRIMARY, "b"]);
        assert_eq!(s.dests[1].export.url, "https://b/otel/v1/traces");
        assert_eq!(s.dests[1].sampling, Some(0.5));
        assert_eq!(s.dests[1].convention, RawConvention::OpenInference);
        // Without otlpEndpoint (and no env endpoint) the destinations alone trace.
        let s = resolve(
            Some(&tracing(
                "randomSampling: true\ndestinations:\n- {name: only, otlpEndpoint: 'http://c:4317'}",
            )),
            None,
            &no_env,
        )
        .expect("valid")
        .expect("on");
        let names: Vec<_> = s.dests.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["only"]);
        let err = resolve(
            Some(&tracing(
                "destinations:\n- {name: x, otlpEndpoint: 'http://c:1'}\n- {name: x, otlpEndpoint: 'http://d:1'}",
            )),
            None,
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("config.tracing.destinations[1].name") && err.contains("\"x\""),
            "{err}"
        );
    }
}
