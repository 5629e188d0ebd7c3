//! `RawRoot` → `Snapshot`: cross-field validation and compilation. Every problem is collected
//! with its YAML path, so one run reports them all.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use http::HeaderName;
use regex::Regex;

use super::raw::*;
use super::snapshot::*;
use super::{ConfigError, ConfigErrors, Secret, Source, tls};
use crate::llm::RouteType;
use crate::llm::provider::{AZURE_API_VERSION, Provider, find_preset};
use crate::time::parse_duration;

mod access;
use access::json_policy;
mod cloud;
mod llm;
use llm::compile_llm;

/// Default `llm:` shorthand port, as agentgateway's examples use.
pub const DEFAULT_LLM_PORT: u16 = 4000;
/// Default `mcp:` shorthand port.
pub const DEFAULT_MCP_PORT: u16 = 3000;

struct Ctx {
    errors: Vec<ConfigError>,
    /// Endpoints of remote guards seen so far: (authority, tls).
    guard_targets: Vec<(String, bool)>,
    /// `config.redis` is set (`globalRateLimit` needs it).
    has_redis: bool,
}

impl Ctx {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(ConfigError::new(path, msg));
    }

    /// Compiles a `promptGuard` / `guardrails` block, collecting its remote endpoints.
    fn prompt_guard(
        &mut self,
        raw: &crate::guard::config::RawPromptGuard,
        path: &str,
    ) -> Option<Arc<crate::guard::PromptGuard>> {
        match crate::guard::config::compile(raw, path) {
            Ok(pg) => {
                for g in pg.request.iter().chain(&pg.response) {
                    let t = match &g.kind {
                        crate::guard::GuardKind::Webhook(w) => (w.authority.clone(), w.tls),
                        crate::guard::GuardKind::Moderation(m) => (m.authority.clone(), m.tls),
                        crate::guard::GuardKind::Regex { .. } => continue,
                    };
                    if !self.guard_targets.contains(&t) {
                        self.guard_targets.push(t);
                    }
                }
                Some(Arc::new(pg))
            }
            Err(problems) => {
                for (p, m) in problems {
                    self.err(p, m);
                }
                None
            }
        }
    }
}

pub fn compile(raw: RawRoot, source: Source, text: &str) -> Result<Snapshot, ConfigErrors> {
    let mut cx = Ctx {
        errors: Vec::new(),
        guard_targets: Vec::new(),
        has_redis: false,
    };
    let global = compile_global(&mut cx, &raw);
    cx.has_redis = global.redis.is_some();
    let mut binds = Vec::new();
    for (i, b) in raw.binds.iter().enumerate() {
        if let Some(bind) = compile_bind(&mut cx, &global, b, &format!("binds[{i}]")) {
            binds.push(bind);
        }
    }
    if let Some(bind) = raw.llm.as_ref().and_then(|llm| compile_llm(&mut cx, llm)) {
        binds.push(bind);
    }
    if let Some(mcp) = &raw.mcp {
        let port = mcp.port.unwrap_or(DEFAULT_MCP_PORT);
        let route = RawRoute {
            name: Some("mcp".into()),
            policies: mcp.policies.clone(),
            backends: vec![RawBackend {
                mcp: Some(mcp.backend.clone()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let bind = RawBind {
            port,
            address: None,
            listeners: vec![RawListener {
                routes: vec![route],
                ..Default::default()
            }],
        };
        // Report paths as the user wrote them (`mcp.targets[0]...`), not the expanded bind.
        if let Some(b) = compile_bind(&mut cx, &global, &bind, "mcp") {
            binds.push(b);
        }
    }
    let mut seen = std::collections::HashMap::new();
    for (i, b) in binds.iter().enumerate() {
        if let Some(prev) = seen.insert((b.address, b.port), i) {
            cx.err(
                format!("binds[{i}].port"),
                format!("port {} is already used by binds[{prev}]", b.port),
            );
        }
    }
    let mut guard_upstreams = std::collections::HashMap::new();
    for (authority, tls) in std::mem::take(&mut cx.guard_targets) {
        let key = guard_key(&authority, tls);
        if let Some(up) = upstream(&mut cx, &key, None, None, "promptGuard") {
            guard_upstreams.insert(key, up);
        }
    }
    if !cx.errors.is_empty() {
        return Err(ConfigErrors(cx.errors));
    }
    let logging = merged_logging(&raw);
    Ok(Snapshot {
        global,
        binds,
        logging,
        raw: Arc::new(raw),
        source,
        text: text.to_owned(),
        guard_upstreams,
    })
}

/// `config.logging` with the `frontendPolicies.accessLog` policy (filter, add, remove) over it.
fn merged_logging(raw: &RawRoot) -> Option<crate::config::telemetry::RawLogging> {
    let base = raw.config.as_ref().and_then(|c| c.logging.clone());
    let policy = raw
        .frontend_policies
        .as_ref()
        .and_then(|f| f.access_log.clone().or_else(|| f.logging.clone()));
    let Some(p) = policy else { return base };
    let mut merged = base.unwrap_or_default();
    if p.filter.is_some() {
        merged.filter = p.filter;
    }
    let fields = merged.fields.get_or_insert_with(Default::default);
    fields.remove.extend(p.remove);
    fields.add.0.extend(p.add.0);
    Some(merged)
}

fn parse_addr(cx: &mut Ctx, path: &str, v: Option<&str>, default: &str) -> Option<SocketAddr> {
    let s = v.unwrap_or(default).trim();
    if s.eq_ignore_ascii_case("off") || s.is_empty() {
        return None;
    }
    match s.to_socket_addrs() {
        Ok(mut it) => {
            // Prefer IPv4 for `localhost:port` so probes with 127.0.0.1 work everywhere.
            let all: Vec<_> = it.by_ref().collect();
            all.iter()
                .find(|a| a.is_ipv4())
                .or_else(|| all.first())
                .copied()
        }
        Err(e) => {
            cx.err(
                path,
                format!("invalid address {s:?}: {e} (expected ip:port, localhost:port or off)"),
            );
            None
        }
    }
}

fn compile_global(cx: &mut Ctx, raw: &RawRoot) -> Global {
    let g = raw.config.clone().unwrap_or_default();
    let dur = |cx: &mut Ctx, path: &str, v: &Option<String>, default: u64| match v {
        Some(s) => parse_duration(s).unwrap_or_else(|e| {
            cx.err(path, e);
            std::time::Duration::from_secs(default)
        }),
        None => std::time::Duration::from_secs(default),
    };
    let mut limits = Limits::default();
    if let Some(l) = &g.limits {
        if let Some(n) = l.max_request_body_bytes {
            limits.max_request_body = n;
        }
        if let Some(n) = l.max_response_body_bytes {
            limits.max_response_body = n;
        }
        if let Some(n) = l.max_connections {
            limits.max_connections = n;
        }
        if let Some(n) = l.max_headers {
            limits.max_headers = n;
        }
        if l.header_read_timeout.is_some() {
            limits.header_read_timeout = dur(
                cx,
                "config.limits.headerReadTimeout",
                &l.header_read_timeout,
                10,
            );
        }
        if l.stream_idle_timeout.is_some() {
            limits.stream_idle_timeout = dur(
                cx,
                "config.limits.streamIdleTimeout",
                &l.stream_idle_timeout,
                300,
            );
        }
    }
    if let Some(http) = raw.frontend_policies.as_ref().and_then(|f| f.http.as_ref()) {
        if let Some(n) = http.max_buffer_size {
            limits.max_request_body = n;
        }
        if let Some(n) = http.http1_max_headers {
            limits.max_headers = n;
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "gateway".into());
    let name = g.gateway.clone().unwrap_or(host);
    let gateway_name = match &g.namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name,
    };
    let mut sensitive: Vec<String> = g
        .sensitive_headers
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    sensitive.sort();
    Global {
        gateway_name,
        admin_addr: parse_addr(
            cx,
            "config.adminAddr",
            g.admin_addr.as_deref(),
            "localhost:15000",
        ),
        stats_addr: parse_addr(
            cx,
            "config.statsAddr",
            g.stats_addr.as_deref(),
            "0.0.0.0:15020",
        ),
        readiness_addr: parse_addr(
            cx,
            "config.readinessAddr",
            g.readiness_addr.as_deref(),
            "0.0.0.0:15021",
        ),
        drain_deadline: dur(
            cx,
            "config.connectionTerminationDeadline",
            &g.connection_termination_deadline,
            30,
        ),
        min_drain: dur(
            cx,
            "config.connectionMinTerminationDeadline",
            &g.connection_min_termination_deadline,
            0,
        ),
        worker_threads: g.worker_threads,
        limits,
        sensitive_headers: sensitive,
        ui_recent_requests: ui_recent_requests(cx, g.ui.as_ref()),
        model_catalog: model_catalog(cx, g.model_catalog.as_deref()),
        metrics: g
            .metrics
            .as_ref()
            .and_then(|v| {
                json_policy(
                    cx,
                    v,
                    "config.metrics",
                    crate::metrics::MetricsConfig::parse,
                )
            })
            .map(Arc::new),
        redis: g
            .redis
            .as_ref()
            .and_then(|v| json_policy(cx, v, "config.redis", crate::store::RedisConfig::parse)),
    }
}

/// `config.modelCatalog`: each source parsed now, so a bad rate fails the load with its path.
fn model_catalog(
    cx: &mut Ctx,
    raw: Option<&[yaml_serde::Value]>,
) -> Option<crate::spend::CatalogConfig> {
    let raw = raw?;
    let mut sources = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let path = format!("config.modelCatalog[{i}]");
        let json = match serde_json::to_value(v) {
            Ok(j) => j,
            Err(e) => {
                cx.err(&path, format!("not representable as JSON: {e}"));
                continue;
            }
        };
        match crate::spend::CatalogConfig::source(&json) {
            Ok(s) => sources.push(s),
            // `inline.providers.x.models.y.rates.input: msg` → the full YAML path.
            Err(e) => match e.split_once(": ") {
                Some((sub, msg)) if !sub.contains(' ') => cx.err(format!("{path}.{sub}"), msg),
                _ => cx.err(&path, e),
            },
        }
    }
    Some(crate::spend::CatalogConfig { sources })
}

/// Default and largest `config.ui.recentRequests`.
const UI_RECENT_DEFAULT: usize = 1000;
const UI_RECENT_MAX: usize = 100_000;

fn ui_recent_requests(cx: &mut Ctx, ui: Option<&super::raw::RawUi>) -> usize {
    match ui.and_then(|u| u.recent_requests) {
        None => UI_RECENT_DEFAULT,
        Some(n) if n <= UI_RECENT_MAX => n,
        Some(n) => {
            cx.err(
                "config.ui.recentRequests",
                format!("{n} is more than {UI_RECENT_MAX} (each kept request holds its record in memory)"),
            );
            UI_RECENT_DEFAULT
        }
    }
}

fn compile_bind(cx: &mut Ctx, _g: &Global, b: &RawBind, path: &str) -> Option<Bind> {
    let address = match &b.address {
        Some(a) => match a.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                cx.err(
                    format!("{path}.address"),
                    format!("invalid IP address {a:?}"),
                );
                return None;
            }
        },
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let mut listeners = Vec::new();
    for (i, l) in b.listeners.iter().enumerate() {
        let lpath = format!("{path}.listeners[{i}]");
        let tls = match (
            l.protocol
                .as_deref()
                .map(str::to_ascii_uppercase)
                .as_deref(),
            &l.tls,
        ) {
            (None | Some("HTTP"), None) => None,
            (Some("HTTPS") | None, Some(t)) => match tls::server(t) {
                Ok(c) => Some(c),
                Err(e) => {
                    cx.err(format!("{lpath}.tls"), e);
                    None
                }
            },
            (Some("HTTPS"), None) => {
                cx.err(
                    format!("{lpath}.tls"),
                    "protocol HTTPS needs `tls: {cert, key}`",
                );
                None
            }
            (Some(p), _) => {
                cx.err(
                    format!("{lpath}.protocol"),
                    format!("unsupported protocol {p:?} (use HTTP or HTTPS)"),
                );
                None
            }
        };
        let mut routes = Vec::new();
        for (j, r) in l.routes.iter().enumerate() {
            if let Some(route) = compile_route(cx, r, &format!("{lpath}.routes[{j}]"), j) {
                routes.push(Arc::new(route));
            }
        }
        listeners.push(Listener {
            name: l.name.clone().unwrap_or_else(|| "default".into()),
            hostname: l.hostname.as_deref().map(HostMatch::parse),
            tls,
            routes,
        });
    }
    Some(Bind {
        port: b.port,
        address,
        listeners,
        name: format!("bind/{}", b.port),
    })
}

fn compile_route(cx: &mut Ctx, r: &RawRoute, path: &str, index: usize) -> Option<Route> {
    let base = r.name.clone().unwrap_or_else(|| format!("route{index}"));
    let name = match &r.namespace {
        Some(ns) => format!("{ns}/{base}"),
        None => base,
    };
    let mut matches = Vec::new();
    let raw_matches = r
        .matches
        .clone()
        .unwrap_or_else(|| vec![RawMatch::default()]);
    for (i, m) in raw_matches.iter().enumerate() {
        if let Some(m) = compile_match(cx, m, &format!("{path}.matches[{i}]")) {
            matches.push(m);
        }
    }
    let policies = compile_policies(
        cx,
        r.policies.as_ref(),
        &format!("{path}.policies"),
        &Policies::default(),
    );
    if r.backends.is_empty() {
        cx.err(
            format!("{path}.backends"),
            "a route needs at least one backend",
        );
    }
    let mut backends = Vec::new();
    for (i, b) in r.backends.iter().enumerate() {
        if let Some(b) = compile_backend(
            cx,
            b,
            &format!("{path}.backends[{i}]"),
            &policies,
            r.policies.as_ref(),
        ) {
            backends.push(b);
        }
    }
    Some(Route {
        name,
        hostnames: r.hostnames.iter().map(|h| HostMatch::parse(h)).collect(),
        matches,
        backends,
        policies,
    })
}

fn compile_value_match(cx: &mut Ctx, v: &RawValueMatch, path: &str) -> Option<ValueMatch> {
    match (&v.exact, &v.regex) {
        (Some(e), None) => Some(ValueMatch::Exact(e.clone())),
        (None, Some(r)) => match Regex::new(&format!("^(?:{r})$")) {
            Ok(re) => Some(ValueMatch::Regex(re)),
            Err(e) => {
                cx.err(format!("{path}.regex"), format!("invalid regex {r:?}: {e}"));
                None
            }
        },
        _ => {
            cx.err(path, "set exactly one of `exact` or `regex`");
            None
        }
    }
}

fn compile_match(cx: &mut Ctx, m: &RawMatch, path: &str) -> Option<Match> {
    let p = m.path.clone().unwrap_or(RawPathMatch {
        path_prefix: Some("/".into()),
        ..Default::default()
    });
    let path_match = match (&p.exact, &p.path_prefix, &p.regex) {
        (Some(e), None, None) => PathMatch::Exact(e.clone()),
        (None, Some(pre), None) => {
            if !pre.starts_with('/') {
                cx.err(
                    format!("{path}.path.pathPrefix"),
                    format!("{pre:?} must start with '/'"),
                );
            }
            PathMatch::Prefix(pre.clone())
        }
        (None, None, Some(r)) => match Regex::new(&format!("^(?:{r})$")) {
            Ok(re) => PathMatch::Regex(re),
            Err(e) => {
                cx.err(
                    format!("{path}.path.regex"),
                    format!("invalid regex {r:?}: {e}"),
                );
                return None;
            }
        },
        _ => {
            cx.err(
                format!("{path}.path"),
                "set exactly one of `exact`, `pathPrefix` or `regex`",
            );
            return None;
        }
    };
    let method = match &m.method {
        Some(s) => match http::Method::from_bytes(s.to_ascii_uppercase().as_bytes()) {
            Ok(mm) => Some(mm),
            Err(_) => {
                cx.err(
                    format!("{path}.method"),
                    format!("invalid HTTP method {s:?}"),
                );
                None
            }
        },
        None => None,
    };
    let mut headers = Vec::new();
    for (i, h) in m.headers.iter().enumerate() {
        let hp = format!("{path}.headers[{i}]");
        let Ok(name) = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes()) else {
            cx.err(
                format!("{hp}.name"),
                format!("invalid header name {:?}", h.name),
            );
            continue;
        };
        if let Some(v) = compile_value_match(cx, &h.value, &format!("{hp}.value")) {
            headers.push((name, v));
        }
    }
    let mut query = Vec::new();
    for (i, q) in m.query.iter().enumerate() {
        if let Some(v) = compile_value_match(cx, &q.value, &format!("{path}.query[{i}].value")) {
            query.push((q.name.clone(), v));
        }
    }
    Some(Match {
        path: path_match,
        method,
        headers,
        query,
    })
}

fn secret(cx: &mut Ctx, s: &RawSecretRef, path: &str) -> Option<Secret> {
    match s {
        RawSecretRef::Inline(v) => Some(Secret::new(v.clone())),
        RawSecretRef::File { file } => match std::fs::read_to_string(file) {
            Ok(v) => Some(Secret::new(v.trim().to_owned())),
            Err(e) => {
                cx.err(format!("{path}.file"), format!("cannot read {file:?}: {e}"));
                None
            }
        },
        RawSecretRef::Located { value, .. } => secret(cx, value, &format!("{path}.value")),
    }
}

/// `backendAuth`: exactly one of `key`, `passthrough`, `aws`, `gcp`.
fn backend_auth(cx: &mut Ctx, a: &RawBackendAuth, path: &str) -> Option<BackendAuth> {
    let set = [
        a.key.is_some(),
        a.passthrough.is_some(),
        a.aws.is_some(),
        a.gcp.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        cx.err(
            path,
            "set exactly one of `key`, `passthrough`, `aws` or `gcp`",
        );
        return None;
    }
    if let Some(k) = &a.key {
        return secret(cx, k, &format!("{path}.key")).map(BackendAuth::Key);
    }
    if a.passthrough.is_some() {
        return Some(BackendAuth::Passthrough);
    }
    if let Some(aws) = &a.aws {
        return cloud::aws(cx, aws, &format!("{path}.aws")).map(BackendAuth::Cloud);
    }
    let gcp = a.gcp.as_ref()?;
    cloud::gcp(cx, gcp, &format!("{path}.gcp")).map(BackendAuth::Cloud)
}

/// Compiles `raw` on top of `parent` (route policies for backends).
fn compile_policies(
    cx: &mut Ctx,
    raw: Option<&RawPolicies>,
    path: &str,
    parent: &Policies,
) -> Policies {
    let mut p = parent.clone();
    let Some(raw) = raw else {
        return p;
    };
    if let Some(a) = &raw.backend_auth {
        p.backend_auth = backend_auth(cx, a, &format!("{path}.backendAuth"));
    }
    if let Some(t) = &raw.timeout {
        for (field, v, slot) in [
            ("requestTimeout", &t.request_timeout, &mut p.request_timeout),
            (
                "backendRequestTimeout",
                &t.backend_request_timeout,
                &mut p.backend_request_timeout,
            ),
        ] {
            if let Some(s) = v {
                match parse_duration(s) {
                    Ok(d) => *slot = Some(d),
                    Err(e) => cx.err(format!("{path}.timeout.{field}"), e),
                }
            }
        }
    }
    access::compile(cx, raw, path, &mut p);
    if let Some(m) = &raw.request_header_modifier {
        check_header_names(cx, m, &format!("{path}.requestHeaderModifier"));
        p.request_headers = Some(m.clone());
    }
    if let Some(m) = &raw.response_header_modifier {
        check_header_names(cx, m, &format!("{path}.responseHeaderModifier"));
        p.response_headers = Some(m.clone());
    }
    if let Some(c) = &raw.cors {
        p.cors = Some(Arc::new(c.clone()));
    }
    if let Some(rw) = &raw.url_rewrite
        && let Some(pr) = &rw.path
    {
        p.path_rewrite = match (&pr.full, &pr.prefix) {
            (Some(f), None) => Some(PathRewrite::Full(f.clone())),
            (None, Some(pre)) => Some(PathRewrite::Prefix(pre.clone())),
            _ => {
                cx.err(
                    format!("{path}.urlRewrite.path"),
                    "set exactly one of `full` or `prefix`",
                );
                None
            }
        };
    }
    if let Some(ai) = &raw.ai {
        let mut routes = Vec::new();
        for (suffix, kind) in &ai.routes {
            match RouteType::parse(kind) {
                Some(rt) => routes.push((suffix.clone(), rt)),
                None => cx.err(
                    format!("{path}.ai.routes[{suffix:?}]"),
                    format!("unknown route type {kind:?} (use completions, messages, responses, embeddings, models, passthrough)"),
                ),
            }
        }
        // Longest suffix first, so `/v1/messages/count_tokens` wins over `/messages`.
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        let prompt_guard = ai
            .prompt_guard
            .as_ref()
            .and_then(|g| cx.prompt_guard(g, &format!("{path}.ai.promptGuard")));
        p.ai = Some(Arc::new(AiPolicy {
            defaults: ai.defaults.clone().unwrap_or_default(),
            overrides: ai.overrides.clone().unwrap_or_default(),
            model_aliases: ai
                .model_aliases
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            routes,
            prompt_guard,
        }));
    }
    p
}

fn check_header_names(cx: &mut Ctx, m: &RawHeaderModifier, path: &str) {
    for name in m.add.keys().chain(m.set.keys()).chain(m.remove.iter()) {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            cx.err(path, format!("invalid header name {name:?}"));
        }
    }
}

fn compile_backend(
    cx: &mut Ctx,
    b: &RawBackend,
    path: &str,
    route_policies: &Policies,
    route_raw: Option<&RawPolicies>,
) -> Option<Backend> {
    let set = [b.host.is_some(), b.ai.is_some(), b.mcp.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if set != 1 {
        cx.err(path, "set exactly one of `host`, `ai` or `mcp`");
        return None;
    }
    let mut policies = compile_policies(
        cx,
        b.policies.as_ref(),
        &format!("{path}.policies"),
        route_policies,
    );
    let tls_raw = b
        .policies
        .as_ref()
        .and_then(|p| p.backend_tls.as_ref())
        .or_else(|| route_raw.and_then(|p| p.backend_tls.as_ref()));
    if b.ai.is_none() && b.policies.as_ref().is_some_and(|p| p.health.is_some()) {
        cx.err(
            format!("{path}.policies.health"),
            "health is judged for `ai` backends only; this backend would never be ejected",
        );
    }
    let kind = if let Some(host) = &b.host {
        BackendKind::Host(upstream(cx, host, None, tls_raw, &format!("{path}.host"))?)
    } else if let Some(ai) = &b.ai {
        let ai_tls = ai
            .policies
            .as_ref()
            .and_then(|p| p.backend_tls.as_ref())
            .or(tls_raw);
        policies = compile_policies(
            cx,
            ai.policies.as_ref(),
            &format!("{path}.ai.policies"),
            &policies,
        );
        let mut backend = ai_backend(cx, ai, ai_tls, &format!("{path}.ai"))?;
        // The most specific `health`: the ai backend's, the backend's, the route's.
        let health = [
            (ai.policies.as_ref(), format!("{path}.ai.policies.health")),
            (b.policies.as_ref(), format!("{path}.policies.health")),
            (
                route_raw,
                format!(
                    "{}.policies.health",
                    path.rsplit_once(".backends").map_or(path, |(r, _)| r)
                ),
            ),
        ]
        .into_iter()
        .find_map(|(p, at)| p.and_then(|p| p.health.as_ref()).map(|h| (h, at)));
        if let Some((h, at)) = health {
            match crate::llm::route::config::health(Some(h), &at) {
                Ok(h) => backend.health_policy = Arc::new(h),
                Err((at, msg)) => cx.err(at, msg),
            }
        }
        BackendKind::Ai(Arc::new(backend))
    } else {
        let mcp = b.mcp.as_ref()?;
        let authz = b
            .policies
            .as_ref()
            .and_then(|p| p.mcp_authorization.as_ref())
            .or_else(|| route_raw.and_then(|p| p.mcp_authorization.as_ref()));
        match crate::mcp::McpBackend::new("mcp", mcp, authz, &format!("{path}.mcp")) {
            Ok(m) => BackendKind::Mcp(m),
            Err(e) => {
                cx.err(format!("{path}.mcp"), e.to_string());
                return None;
            }
        }
    };
    Some(Backend {
        weight: b.weight.unwrap_or(1),
        kind,
        policies,
    })
}

/// Parses `host:port`, `host` (port from scheme), or an `http(s)://host:port/...` URL.
fn upstream(
    cx: &mut Ctx,
    target: &str,
    default: Option<(u16, bool)>,
    tls_raw: Option<&RawBackendTls>,
    path: &str,
) -> Option<Upstream> {
    let (hostport, scheme_tls) = if let Some(rest) = target.strip_prefix("https://") {
        (rest, Some(true))
    } else if let Some(rest) = target.strip_prefix("http://") {
        (rest, Some(false))
    } else {
        (target, None)
    };
    let hostport = hostport.split('/').next().unwrap_or(hostport);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
            Ok(port) => (
                h.trim_start_matches('[').trim_end_matches(']').to_owned(),
                port,
            ),
            Err(_) => {
                cx.err(path, format!("invalid port in {target:?}"));
                return None;
            }
        },
        _ => {
            let port = match (scheme_tls, default) {
                (Some(true), _) => 443,
                (Some(false), _) => 80,
                (None, Some((p, _))) => p,
                (None, None) => {
                    cx.err(path, format!("{target:?} needs a port (host:port)"));
                    return None;
                }
            };
            (hostport.to_owned(), port)
        }
    };
    if host.is_empty() {
        cx.err(path, format!("missing host in {target:?}"));
        return None;
    }
    let want_tls =
        tls_raw.is_some() || scheme_tls.unwrap_or(default.is_some_and(|d| d.1) || port == 443);
    let tls = if want_tls {
        match tls_raw {
            Some(raw) => match tls::client(raw) {
                Ok(c) => Some(c),
                Err(e) => {
                    cx.err(format!("{path} (backendTLS)"), e);
                    return None;
                }
            },
            None => Some(tls::default_client()),
        }
    } else {
        None
    };
    let server_name = tls_raw
        .and_then(|t| t.hostname.clone())
        .unwrap_or_else(|| host.clone());
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Some(Upstream {
        authority,
        host,
        port,
        tls,
        server_name,
    })
}

fn provider_from(
    cx: &mut Ctx,
    p: &RawAiProvider,
    path: &str,
) -> Option<(Provider, Option<String>)> {
    let mut found: Vec<(Provider, Option<String>)> = Vec::new();
    if let Some(m) = &p.open_ai {
        found.push((Provider::OpenAi, m.model.clone()));
    }
    if let Some(m) = &p.anthropic {
        found.push((Provider::Anthropic, m.model.clone()));
    }
    if let Some(m) = &p.gemini {
        found.push((Provider::Gemini, m.model.clone()));
    }
    if let Some(b) = &p.bedrock {
        let path = format!("{path}.bedrock");
        if let Some(provider) = cloud::bedrock(cx, &b.region, b, &path) {
            found.push((provider, b.model.clone()));
        }
    }
    if let Some(v) = &p.vertex {
        let path = format!("{path}.vertex");
        let region = v.region.as_deref().unwrap_or("global");
        if let Some(provider) = cloud::vertex(cx, &v.project_id, region, &path) {
            found.push((provider, v.model.clone()));
        }
    }
    for az in [&p.azure, &p.azure_open_ai].into_iter().flatten() {
        found.push((
            azure(
                az.resource_name.clone().or_else(|| {
                    az.host
                        .as_ref()
                        .map(|h| h.split('.').next().unwrap_or(h).to_owned())
                }),
                az.resource_type.as_deref(),
                az.api_version.clone(),
                az.project_name.clone(),
            ),
            az.model.clone(),
        ));
    }
    for (name, m) in &p.presets {
        match find_preset(name) {
            Some(preset) => found.push((Provider::Compatible(preset), m.as_ref().and_then(|m| m.model.clone()))),
            None => cx.err(
                format!("{path}.{name}"),
                format!("unknown provider {name:?} (use openAI, anthropic, gemini, azure, bedrock, vertex, or an OpenAI-compatible preset: {})",
                    crate::llm::provider::PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")),
            ),
        }
    }
    if found.len() != 1 {
        if found.is_empty() && p.presets.is_empty() {
            cx.err(
                path,
                "set exactly one provider (openAI, anthropic, gemini, azure, ...)",
            );
        } else if found.len() > 1 {
            cx.err(path, "set exactly one provider");
        }
        return None;
    }
    found.pop()
}

fn azure(
    resource: Option<String>,
    rtype: Option<&str>,
    version: Option<String>,
    project: Option<String>,
) -> Provider {
    Provider::Azure {
        resource,
        api_version: version.unwrap_or_else(|| AZURE_API_VERSION.into()),
        foundry: matches!(rtype, Some("foundry" | "aiServices")),
        project,
    }
}

fn ai_backend(
    cx: &mut Ctx,
    ai: &RawAiBackend,
    tls_raw: Option<&RawBackendTls>,
    path: &str,
) -> Option<AiBackend> {
    let Some(p) = &ai.provider else {
        cx.err(format!("{path}.provider"), "missing provider");
        return None;
    };
    let (provider, model_override) = provider_from(cx, p, &format!("{path}.provider"))?;
    let (host, port, tls) = provider.default_endpoint();
    let target = ai
        .host_override
        .clone()
        .unwrap_or_else(|| format!("{host}:{port}"));
    let up = upstream(
        cx,
        &target,
        Some((port, tls && ai.host_override.is_none())),
        tls_raw,
        &format!("{path}.hostOverride"),
    )?;
    let cloud = cloud::implicit(&provider);
    Some(AiBackend {
        name: ai
            .name
            .clone()
            .unwrap_or_else(|| provider.name().to_owned()),
        provider,
        upstream: up,
        model_override,
        path_override: ai.path_override.clone(),
        path_prefix: ai.path_prefix.clone(),
        api_key: None,
        cloud,
        defaults: Default::default(),
        overrides: Default::default(),
        strip_model_prefix: None,
        prompt_guard: None,
        health_policy: Default::default(),
        health: Default::default(),
    })
}
